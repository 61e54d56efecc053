"""The sandbox's HTTP side (FastAPI): the Bot API stand-in under /bot<token>/<method> (and files under
/file/bot<token>/…), the browser chat page at /, and the page's own endpoints under /sandbox/."""

from __future__ import annotations

import json
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.datastructures import UploadFile

from bot.i18n import gettext_for
from bot.sandbox.telegram import ApiError, BotApi, StoredFile

PAGE = Path(__file__).with_name("page.html")
UPLOAD_LIMIT = 50 * 1024 * 1024  # what Telegram's apps let a person send a bot


@dataclass
class Persona:
    """A demo person the page can speak as."""

    telegram_id: int
    name: str
    role: str  # rep, manager, admin, guest (not yet let in)
    language: str = "zh-hans"  # what their Telegram app reports


@dataclass
class Controls:
    """What the composition lends the page: the people, moving the scheduler's clock, the page's language."""

    personas: list[Persona] = field(default_factory=list)
    language: str = "zh_Hans"
    advance: Callable[[float], Awaitable[str]] | None = None  # hours → the new sandbox time (ISO)
    now: Callable[[], str] | None = None


def page_texts(language: str, bot: str) -> dict[str, Any]:
    """Every word the page shows, from the catalogues."""
    _ = gettext_for(language)
    return {
        "lang": {"zh_Hans": "zh-CN", "zh_Hant": "zh-TW"}.get(language, "en"),
        "title": _("FieldCRM sandbox"),
        "hint": _("Offline: no Telegram. Pick who you are, then chat with the bot."),
        "placeholder": _("Message — or @{bot} and a name for inline mode").format(bot=bot),
        "hour": _("⏩ +1 hour"), "day": _("⏩ +1 day"),
        "clock_tip": _("Move the scheduler's clock forward: reminders and digests come due"),
        "share": _("📍 Share location"), "share_tip": _("Share this location (a check-in, or /nearby)"),
        "latlon": _("latitude, longitude"), "commands": _("Commands"), "send": _("Send"),
        "photo": _("Send a photo (e.g. of a business card)"), "file": _("Send a picture as a file"),
        "no_results": _("No results"),
        "roles": {"rep": _("rep"), "manager": _("manager"), "admin": _("admin"), "guest": _("not invited yet")},
    }


def _ok(result: Any) -> JSONResponse:
    return JSONResponse({"ok": True, "result": result})


def _error(error: ApiError) -> JSONResponse:
    return JSONResponse(error.payload(), status_code=error.code)


async def _params(request: Request) -> tuple[dict[str, Any], dict[str, StoredFile]]:
    params: dict[str, Any] = dict(request.query_params)
    files: dict[str, StoredFile] = {}
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("application/json"):
        body = await request.body()
        if body:
            try:
                params.update(json.loads(body))
            except ValueError:
                raise ApiError(400, "Bad Request: can't parse JSON") from None
    elif content_type.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
        form = await request.form()
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):
                files[key] = StoredFile(await value.read(), secrets.token_hex(8), value.filename,
                                        value.content_type)
            else:
                params[key] = value
    return params, files


def create_app(api: BotApi, controls: Controls | None = None) -> FastAPI:
    controls = controls or Controls()
    for persona in controls.personas:
        api.add_person(persona.telegram_id, persona.name, persona.language)
    app = FastAPI(title="FieldCRM sandbox", docs_url=None, redoc_url=None, openapi_url=None)

    @app.api_route("/bot{token}/{method}", methods=["GET", "POST"])
    async def bot_api(token: str, method: str, request: Request) -> JSONResponse:
        if token != api.token:
            return JSONResponse({"ok": False, "error_code": 401, "description": "Unauthorized"}, status_code=401)
        try:
            params, files = await _params(request)
            return _ok(await api.call(method, params, files))
        except ApiError as error:
            return _error(error)

    @app.get("/file/bot{token}/files/{file_id}")
    async def bot_file(token: str, file_id: str) -> Response:
        stored = api.files.get(file_id)
        if token != api.token or stored is None:
            return JSONResponse({"ok": False, "error_code": 404, "description": "Not Found"}, status_code=404)
        return Response(stored.data, media_type=stored.mime or "application/octet-stream")

    # ---------------------------------------------------------------- the page

    @app.get("/", response_class=HTMLResponse)
    async def page() -> HTMLResponse:
        return HTMLResponse(PAGE.read_text(encoding="utf-8"))

    def person(payload: dict[str, Any]) -> int:
        telegram_id = int(payload.get("user", 0))
        if telegram_id not in api.chats:
            raise ApiError(400, "Bad Request: unknown person")
        return telegram_id

    async def handle(request: Request, work: Callable[[dict[str, Any]], Awaitable[Any]]) -> JSONResponse:
        try:
            payload = await request.json()
            if not isinstance(payload, dict):
                raise ValueError
        except ValueError:
            return _error(ApiError(400, "Bad Request: send a JSON object"))
        try:
            return _ok(await work(payload))
        except ApiError as error:
            return _error(error)
        except (KeyError, TypeError, ValueError) as error:
            return _error(ApiError(400, f"Bad Request: {error}"))

    @app.get("/sandbox/state")
    async def state() -> JSONResponse:
        return _ok({"bot": api.bot_user["username"], "now": controls.now() if controls.now else None,
                    "texts": page_texts(controls.language, api.bot_user["username"]),
                    "personas": [{"id": p.telegram_id, "name": p.name, "role": p.role, "language": p.language,
                                  "blocked": api.chats[p.telegram_id].blocked} for p in controls.personas]})

    @app.post("/sandbox/send")
    async def send(request: Request) -> JSONResponse:
        async def work(p: dict[str, Any]) -> Any:
            text = str(p["text"])
            if not text.strip() or len(text) > 4096:
                raise ApiError(400, "Bad Request: a message has 1 to 4096 characters")
            return (await api.user_message(person(p), text=text))["message_id"]
        return await handle(request, work)

    @app.post("/sandbox/file")
    async def send_file(request: Request) -> JSONResponse:
        """The page's 📷 / 📎: a picture from the person's disk, sent as a photo or as a file
        (multipart form: user, file, as = photo | document)."""
        try:
            form = await request.form()
            upload = form.get("file")
            if not isinstance(upload, UploadFile):
                raise ApiError(400, "Bad Request: choose a file")
            data = await upload.read(UPLOAD_LIMIT + 1)
            if not data or len(data) > UPLOAD_LIMIT:
                raise ApiError(400, "Bad Request: a file has 1 byte to 50 MB")
            as_photo = form.get("as", "photo") == "photo"
            message = await api.user_file(person({"user": form.get("user")}), data, name=upload.filename,
                                          mime=upload.content_type, as_photo=as_photo)
            return _ok(message["message_id"])
        except ApiError as error:
            return _error(error)
        except (KeyError, TypeError, ValueError) as error:
            return _error(ApiError(400, f"Bad Request: {error}"))

    @app.post("/sandbox/location")
    async def location(request: Request) -> JSONResponse:
        async def work(p: dict[str, Any]) -> Any:
            lat, lon = float(p["latitude"]), float(p["longitude"])
            if not (-90 <= lat <= 90 and -180 <= lon <= 180):
                raise ApiError(400, "Bad Request: wrong latitude or longitude")
            return (await api.user_message(person(p), location=(lat, lon)))["message_id"]
        return await handle(request, work)

    @app.post("/sandbox/tap")
    async def tap(request: Request) -> JSONResponse:
        async def work(p: dict[str, Any]) -> Any:
            return await api.user_tap(person(p), int(p["message_id"]), str(p["data"]))
        return await handle(request, work)

    @app.post("/sandbox/inline")
    async def inline(request: Request) -> JSONResponse:
        async def work(p: dict[str, Any]) -> Any:
            return await api.user_inline(person(p), str(p["query"])[:256])
        return await handle(request, work)

    @app.post("/sandbox/pick")
    async def pick(request: Request) -> JSONResponse:
        async def work(p: dict[str, Any]) -> Any:
            return api.pick_inline(person(p), str(p["query_id"]), str(p["result_id"]))["message_id"]
        return await handle(request, work)

    @app.post("/sandbox/block")
    async def block(request: Request) -> JSONResponse:
        async def work(p: dict[str, Any]) -> Any:
            api.chats[person(p)].blocked = bool(p.get("blocked", True))
            return True
        return await handle(request, work)

    @app.post("/sandbox/clock")
    async def clock(request: Request) -> JSONResponse:
        async def work(p: dict[str, Any]) -> Any:
            hours = float(p["hours"])
            if not 0 < hours <= 24 * 31:
                raise ApiError(400, "Bad Request: move the clock forward by up to 31 days")
            if controls.advance is None:
                raise ApiError(400, "Bad Request: this sandbox has no clock to move")
            return await controls.advance(hours)
        return await handle(request, work)

    @app.get("/sandbox/feed")
    async def feed(user: int, after: int = 0, wait: float = 0) -> JSONResponse:
        events = await api.wait_feed(after, min(max(wait, 0), 25))
        mine = [e for e in events if e.get("chat_id") == user]
        return _ok({"events": mine, "last": len(api.feed)})

    @app.get("/sandbox/menu")
    async def menu(user: int) -> JSONResponse:
        chat = api.chats.get(user)
        return _ok(api.menu_for(user, chat.language_code if chat else None))

    @app.get("/sandbox/files/{file_id}")
    async def download(file_id: str) -> Response:
        stored = api.files.get(file_id)
        if stored is None:
            return JSONResponse({"ok": False, "error_code": 404, "description": "Not Found"}, status_code=404)
        headers = {"Content-Disposition": f"inline; filename*=UTF-8''{quote(stored.name or file_id)}"}
        return Response(stored.data, media_type=stored.mime or "application/octet-stream", headers=headers)

    return app
