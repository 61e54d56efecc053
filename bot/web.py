"""The product's HTTP app (FastAPI), one per process, on HTTP_HOST:HTTP_PORT:
- webhook mode: Telegram POSTs each update to WEBHOOK_URL's path; the request must carry the secret token
  header (else 401, nothing is processed); the update runs through the same Dispatcher (one transaction per
  update) before the 200, so a crash makes Telegram deliver it again;
- the ERP sync API under /api/v1 (bot.api), its docs at /api/docs;
- GET /health and /healthz for load balancers and monitors: the process is up, the database answers, which
  role this process has and, where the scheduler runs, when its jobs last ran."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse

from aiogram import Bot, Dispatcher
from aiogram.types import Update
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.lookup import LookupIndex

log = logging.getLogger("fieldcrm.web")
DEFAULT_PATH = "/telegram/webhook"


def webhook_path(url: str) -> str:
    path = urlparse(url).path
    return path if path and path != "/" else DEFAULT_PATH


def create_web_app(bot: Bot | None, dispatcher: Dispatcher | None, sessions: async_sessionmaker[AsyncSession], *,
                   path: str | None = None, secret: str | None = None, api_key: Callable[[], bytes] | None = None,
                   index: LookupIndex | None = None, timezone: str = "Asia/Shanghai", role: str = "all",
                   jobs: Callable[[], dict[str, Any]] | None = None) -> FastAPI:
    """`bot`, `dispatcher`, `path`, `secret`: the webhook (left out when None); `api_key`: the ERP API (left
    out when None); `jobs`: the scheduler's last runs for /healthz (where this process runs it)."""
    app = FastAPI(title="FieldCRM ERP sync API", version="1", docs_url="/api/docs" if api_key else None,
                  redoc_url=None, openapi_url="/api/openapi.json" if api_key else None)
    if api_key is not None:
        from bot.api import create_api, install

        install(app, create_api(sessions, api_key, index=index, timezone=timezone))
    if bot is not None and dispatcher is not None and path and secret:
        _webhook(app, bot, dispatcher, path, secret)

    from bot.metrics import API, render

    @app.middleware("http")
    async def count_requests(request: Request, call_next):
        import uuid

        from bot.logs import REQUEST_ID

        request_id = request.headers.get("x-request-id", "")[:64] or uuid.uuid4().hex
        REQUEST_ID.set(request_id)
        response = await call_next(request)
        response.headers["X-Request-ID"] = request_id
        route = request.scope.get("route")
        API.labels(getattr(route, "path", "unmatched"), request.method, str(response.status_code)).inc()
        return response

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        body, content_type = await render(sessions)
        return Response(body, media_type=content_type)

    @app.get("/health", include_in_schema=False)
    @app.get("/healthz", include_in_schema=False)
    async def health() -> JSONResponse:
        body: dict[str, Any] = {"ok": True, "role": role}
        if jobs is not None:
            body["scheduler"] = jobs()
        try:
            async with sessions() as session:
                await session.execute(text("SELECT 1"))
        except Exception:  # the answer is the point: unhealthy, and why is in the log
            log.exception("health check: database unreachable")
            return JSONResponse({**body, "ok": False, "database": "unreachable"}, status_code=503)
        return JSONResponse({**body, "database": "ok"})

    return app


def _webhook(app: FastAPI, bot: Bot, dispatcher: Dispatcher, path: str, secret: str) -> None:
    @app.post(path, include_in_schema=False)
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
