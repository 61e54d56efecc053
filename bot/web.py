"""Webhook mode's HTTP app (FastAPI): Telegram POSTs each update to WEBHOOK_URL's path; the request must
carry the secret token header (else 401, nothing is processed); the update runs through the same
Dispatcher (one transaction per update) before the 200, so a crash makes Telegram deliver it again.
GET /health answers for load balancers and monitors (it checks the database)."""

from __future__ import annotations

import hmac
import logging
from urllib.parse import urlparse

from aiogram import Bot, Dispatcher
from aiogram.types import Update
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

log = logging.getLogger("fieldcrm.web")
DEFAULT_PATH = "/telegram/webhook"


def webhook_path(url: str) -> str:
    path = urlparse(url).path
    return path if path and path != "/" else DEFAULT_PATH


def create_web_app(bot: Bot, dispatcher: Dispatcher, sessions: async_sessionmaker[AsyncSession], *,
                   path: str, secret: str) -> FastAPI:
    app = FastAPI(title="FieldCRM", docs_url=None, redoc_url=None, openapi_url=None)

    @app.post(path)
    async def webhook(request: Request) -> JSONResponse:
        given = request.headers.get("x-telegram-bot-api-secret-token", "")
        if not hmac.compare_digest(given.encode(), secret.encode()):
            return JSONResponse({"ok": False, "description": "Unauthorized"}, status_code=401)
        try:
            update = Update.model_validate(await request.json(), context={"bot": bot})
        except ValueError:
            return JSONResponse({"ok": False, "description": "Bad Request"}, status_code=400)
        await dispatcher.feed_update(bot, update)
        return JSONResponse({"ok": True})

    @app.get("/health")
    async def health() -> JSONResponse:
        try:
            async with sessions() as session:
                await session.execute(text("SELECT 1"))
        except Exception:  # the answer is the point: unhealthy, and why is in the log
            log.exception("health check: database unreachable")
            return JSONResponse({"ok": False, "database": "unreachable"}, status_code=503)
        return JSONResponse({"ok": True})

    return app
