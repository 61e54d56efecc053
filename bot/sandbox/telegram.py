"""A local stand-in for the Telegram Bot API: the subset FieldCRM uses, with Telegram's response shapes,
error codes and limits, kept in memory.

The bot talks to it exactly as to Telegram (`BOT_API_URL=http://127.0.0.1:PORT`); people talk to it
through the sandbox page (bot.sandbox.app), which turns their typing and taps into updates.

What it checks, like Telegram:
- the token (401 Unauthorized), unknown methods (404 Not Found), unknown chats (400 chat not found),
  a user who blocked the bot (403 Forbidden);
- message text: non-empty, at most 4096 characters (captions 1024) after HTML parsing; HTML parse mode
  accepts only Telegram's tags and entities (400 can't parse entities);
- inline keyboards: callback data of 1–64 bytes (400 BUTTON_DATA_INVALID); an edit that changes nothing
  (400 message is not modified); a callback query answered twice (400 query is too old);
- getUpdates: offset confirms earlier updates, long polling up to `timeout` seconds, 409 Conflict while
  a webhook is set; webhooks get updates POSTed with the secret token header;
- rates (429 Too Many Requests with parameters.retry_after): 30 messages per second overall, per private
  chat a burst of 3 then 1 per second, per group 20 per minute. A test or a bench can make the limits
  stricter or inject 429s.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import itertools
import json
import logging
import math
import re
import secrets
import struct
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("fieldcrm.sandbox")

TEXT_LIMIT, CAPTION_LIMIT = 4096, 1024
ALLOWED_TAGS = {"b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "a", "code", "pre", "tg-spoiler",
                "span", "blockquote", "tg-emoji"}
_TAG = re.compile(r"<(/?)([a-zA-Z][a-zA-Z0-9-]*)((?:\s+[^>]*)?)\s*(/?)>")
_ENTITY = re.compile(r"&(lt|gt|amp|quot|#\d{1,7}|#x[0-9a-fA-F]{1,6});")
_HREF = re.compile(r"""\shref\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+))""")
NOT_MODIFIED = ("message is not modified: specified new message content and reply markup are exactly the same as "
                "a current content and reply markup of the message")
DOWNLOAD_LIMIT = 20 * 1024 * 1024  # getFile: bots download files of up to 20 MB
PHOTO_PIXELS = 100_000_000  # a bigger picture is refused as a photo (send it as a file)
SEND_METHODS = {"sendmessage", "sendphoto", "senddocument", "sendlocation"}


class ApiError(Exception):
    def __init__(self, code: int, description: str, retry_after: int | None = None, limit: str | None = None) -> None:
        super().__init__(description)
        self.code, self.description, self.retry_after = code, description, retry_after
        self.limit = limit  # for a 429: which limit (global, chat, group) or "injected"

    def payload(self) -> dict[str, Any]:
        body: dict[str, Any] = {"ok": False, "error_code": self.code, "description": self.description}
        if self.retry_after is not None:
            body["parameters"] = {"retry_after": self.retry_after}
        return body


def bad(description: str) -> ApiError:
    return ApiError(400, "Bad Request: " + description)


def parse_html(text: str) -> tuple[str, str]:
    """Telegram's HTML parse mode: (plain text, sanitized HTML for display). Raises on what Telegram refuses."""
    plain, out, stack, at = [], [], [], 0
    while at < len(text):
        ch = text[at]
        if ch == "<":
            m = _TAG.match(text, at)
            if not m:
                raise bad(f"can't parse entities: Unexpected character '<' at byte offset {len(text[:at].encode())}")
            closing, tag, attrs = m[1] == "/", m[2].lower(), m[3] or ""
            if tag not in ALLOWED_TAGS:
                raise bad(f'can\'t parse entities: Unsupported start tag "{tag}" at byte offset '
                          f"{len(text[:at].encode())}")
            if closing:
                if not stack or stack[-1] != tag:
                    raise bad(f'can\'t parse entities: Unmatched end tag at byte offset {len(text[:at].encode())}, '
                              f'expected "</{stack[-1] if stack else ""}>", found "</{tag}>"')
                stack.pop()
                out.append("</span>" if tag in ("span", "tg-spoiler") else f"</{tag}>")
            else:
                stack.append(tag)
                if tag == "a":
                    href = _HREF.search(attrs)
                    url = next((g for g in href.groups() if g is not None), "") if href else ""
                    url = html.unescape(url)
                    safe = url if re.match(r"^(https?://|tg://|mailto:)", url) else "#"
                    out.append(f'<a href="{html.escape(safe)}" target="_blank" rel="noopener">')
                elif tag in ("span", "tg-spoiler"):
                    out.append('<span class="spoiler">')
                else:
                    out.append(f"<{tag}>")
            at = m.end()
            continue
        if ch == "&":
            m = _ENTITY.match(text, at)
            if not m:
                raise bad(f"can't parse entities: Unsupported HTML entity at byte offset {len(text[:at].encode())}")
            value = html.unescape(m[0])
            plain.append(value)
            out.append(html.escape(value))
            at = m.end()
            continue
        plain.append(ch)
        out.append(html.escape(ch))
        at += 1
    if stack:
        raise bad(f'can\'t parse entities: Can\'t find end tag corresponding to start tag "{stack[-1]}"')
    return "".join(plain), "".join(out)


def _bool(value: Any) -> bool:
    return value in (True, "true", "True", "1", 1)


def _int(params: dict[str, Any], name: str, *, required: bool = True) -> int | None:
    value = params.get(name)
    if value in (None, ""):
        if required:
            raise bad(f"{name} is empty" if name != "chat_id" else "chat_id is empty")
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        if name == "chat_id":
            raise bad("chat not found") from None
        raise bad(f"invalid {name} specified") from None


def _json(params: dict[str, Any], name: str) -> Any:
    value = params.get(name)
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            raise bad(f"can't parse {name} JSON object") from None
    return value


def _check_markup(markup: Any) -> Any:
    if markup is None:
        return None
    if not isinstance(markup, dict):
        raise bad("can't parse reply keyboard markup JSON object")
    if "inline_keyboard" in markup:
        rows = markup["inline_keyboard"]
        if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
            raise bad("field \"inline_keyboard\" of the InlineKeyboardMarkup must be an Array of Arrays")
        for row in rows:
            for button in row:
                if not isinstance(button, dict) or not button.get("text"):
                    raise bad("text buttons are unallowed in the inline keyboard")
                data = button.get("callback_data")
                if data is not None and not 1 <= len(str(data).encode()) <= 64:
                    raise bad("BUTTON_DATA_INVALID")
                if not any(k in button for k in ("callback_data", "url", "switch_inline_query",
                                                  "switch_inline_query_current_chat", "login_url", "web_app",
                                                  "pay", "copy_text", "callback_game")):
                    raise bad("text buttons are unallowed in the inline keyboard")
        # Inline keyboards are echoed without empty optional fields, like Telegram does.
        return {"inline_keyboard": [[{k: v for k, v in b.items() if v is not None} for b in row] for row in rows]}
    return markup


def _set_markup(message: dict[str, Any], markup: dict[str, Any] | None) -> None:
    """An edit replaces the inline keyboard, or removes it when none is given."""
    if markup:
        message["reply_markup"] = markup
    else:
        message.pop("reply_markup", None)


def _png_size(data: bytes) -> tuple[int, int]:
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        return struct.unpack(">II", data[16:24])
    return 0, 0


@dataclass
class Limits:
    """Telegram's rates. `private_burst` messages may go at once to a private chat, then one per
    `private_interval` seconds; groups get `group_per_minute`; the bot `global_per_second` overall."""

    global_per_second: int = 30
    private_burst: int = 3
    private_interval: float = 1.0
    group_per_minute: int = 20


@dataclass
class StoredFile:
    data: bytes
    file_unique_id: str
    name: str | None = None
    mime: str | None = None


@dataclass
class ChatState:
    id: int
    type: str = "private"
    first_name: str = ""
    title: str | None = None
    language_code: str | None = None
    blocked: bool = False
    messages: dict[int, dict[str, Any]] = field(default_factory=dict)
    next_message_id: int = 1
    # Token bucket (private) or sliding window (group) for the per-chat limit.
    tokens: float = 0.0
    refilled_at: float = 0.0
    window: deque = field(default_factory=deque)

    def as_chat(self) -> dict[str, Any]:
        if self.type == "private":
            return {"id": self.id, "type": "private", "first_name": self.first_name}
        return {"id": self.id, "type": self.type, "title": self.title or str(self.id)}

    def as_user(self) -> dict[str, Any]:
        user = {"id": self.id, "is_bot": False, "first_name": self.first_name}
        if self.language_code:
            user["language_code"] = self.language_code
        return user


class BotApi:
    """The stand-in's state and methods. Thread-unsafe by design: everything runs on one event loop."""

    def __init__(self, token: str, *, bot_id: int | None = None, username: str = "fieldcrm_sandbox_bot",
                 limits: Limits | None = None, clock: Any = time.monotonic, first_update_id: int = 1) -> None:
        self.token = token
        self.bot_user = {"id": bot_id or int(token.split(":", 1)[0]), "is_bot": True, "first_name": "FieldCRM",
                         "username": username, "can_join_groups": True, "can_read_all_group_messages": False,
                         "supports_inline_queries": True}
        self.limits = limits or Limits()
        self.clock = clock
        self.chats: dict[int, ChatState] = {}
        self.updates: list[dict[str, Any]] = []
        self._update_ids = itertools.count(first_update_id)  # after a restart: past what the bot handled
        self._new_update = asyncio.Condition()
        self.closing = False  # set by `close`: long polls answer at once
        self._global_window: deque = deque()
        self.files: dict[str, StoredFile] = {}
        self.callback_queries: dict[str, dict[str, Any]] = {}  # id → {chat_id, answered}
        self.inline_queries: dict[str, dict[str, Any]] = {}  # id → {chat_id, query, results}
        self.commands: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.webhook: dict[str, Any] = {"url": "", "secret_token": None}
        self._webhook_task: asyncio.Task | None = None
        self.feed: list[dict[str, Any]] = []  # what the page shows, in order
        self._feed_changed = asyncio.Condition()
        self._notifying: set[asyncio.Task] = set()
        self.calls: list[tuple[str, dict[str, Any]]] = []  # every method call, for tests
        self.inject: deque[int] = deque()  # retry_after values: the next send methods answer 429 with them
        self.stats = defaultdict(int)

    # ------------------------------------------------------------------ people's side (the page, tests)

    def add_person(self, telegram_id: int, first_name: str, language_code: str | None = None) -> ChatState:
        chat = self.chats.get(telegram_id)
        if chat is None:
            chat = self.chats[telegram_id] = ChatState(telegram_id, "private", first_name,
                                                       language_code=language_code)
            chat.tokens, chat.refilled_at = self.limits.private_burst, self.clock()
        return chat

    def add_group(self, chat_id: int, title: str) -> ChatState:
        chat = self.chats.setdefault(chat_id, ChatState(chat_id, "group", title=title))
        return chat

    def _chat(self, chat_id: int) -> ChatState:
        chat = self.chats.get(chat_id)
        if chat is None:
            raise bad("chat not found")
        if chat.blocked:
            raise ApiError(403, "Forbidden: bot was blocked by the user")
        return chat

    def _store_message(self, chat: ChatState, message: dict[str, Any], *, html_text: str | None = None) -> dict:
        message = {"message_id": chat.next_message_id, "date": int(time.time()), "chat": chat.as_chat(), **message}
        chat.next_message_id += 1
        chat.messages[message["message_id"]] = message
        self._publish({"type": "message", "chat_id": chat.id, "message": message, "html": html_text})
        return message

    async def user_message(self, telegram_id: int, *, text: str | None = None,
                           location: tuple[float, float] | None = None) -> dict[str, Any]:
        """A person writes to the bot (text or a shared location) in their private chat."""
        chat = self.chats[telegram_id]
        content: dict[str, Any] = {"from": chat.as_user()}
        if text is not None:
            content["text"] = text
            if text.startswith("/"):
                command = text.split()[0]
                content["entities"] = [{"type": "bot_command", "offset": 0, "length": len(command)}]
        if location is not None:
            content["location"] = {"latitude": location[0], "longitude": location[1]}
        message = self._store_message(chat, content, html_text=html.escape(text) if text is not None else None)
        await self._push_update({"message": message})
        return message

    async def user_file(self, telegram_id: int, data: bytes, *, name: str | None = None, mime: str | None = None,
                        as_photo: bool = True, caption: str | None = None) -> dict[str, Any]:
        """A person sends a picture: as a photo (Telegram re-encodes it as JPEG, at most 1280 px on its long
        side, plus a 320 px and a 90 px thumbnail, each with its own file id, biggest last) or as a file
        (kept as it is, a `document` with its name and type)."""
        chat = self.chats[telegram_id]
        content: dict[str, Any] = {"from": chat.as_user()}
        if as_photo:
            content["photo"] = [self._photo_size(data, side) for side in (90, 320, 1280)]
        else:
            file_id = "SB" + secrets.token_urlsafe(24)
            self.files[file_id] = StoredFile(data, secrets.token_hex(8), name, mime)
            content["document"] = {"file_id": file_id, "file_unique_id": self.files[file_id].file_unique_id,
                                   "file_name": name or "file", "mime_type": mime or "application/octet-stream",
                                   "file_size": len(data)}
        if caption:
            content["caption"] = caption
        message = self._store_message(chat, content, html_text=html.escape(caption) if caption else None)
        await self._push_update({"message": message})
        return message

    def _photo_size(self, data: bytes, side: int) -> dict[str, Any]:
        import io

        from PIL import Image, ImageOps, UnidentifiedImageError

        try:
            with Image.open(io.BytesIO(data)) as opened:
                if opened.width * opened.height > PHOTO_PIXELS:
                    raise bad("PHOTO_INVALID_DIMENSIONS")
                image = ImageOps.exif_transpose(opened).convert("RGB")
        except (UnidentifiedImageError, OSError, Image.DecompressionBombError):
            raise bad("IMAGE_PROCESS_FAILED") from None
        image.thumbnail((side, side))
        out = io.BytesIO()
        image.save(out, "JPEG", quality=87)
        file_id = "SB" + secrets.token_urlsafe(24)
        self.files[file_id] = StoredFile(out.getvalue(), secrets.token_hex(8), f"photo_{side}.jpg", "image/jpeg")
        return {"file_id": file_id, "file_unique_id": self.files[file_id].file_unique_id, "width": image.width,
                "height": image.height, "file_size": len(out.getvalue())}

    async def user_tap(self, telegram_id: int, message_id: int, data: str) -> str:
        """A person taps an inline button under one of the bot's messages."""
        chat = self.chats[telegram_id]
        message = chat.messages.get(message_id)
        if message is None:
            raise bad("message not found")
        query_id = str(secrets.randbits(60))
        self.callback_queries[query_id] = {"chat_id": chat.id, "answered": False}
        await self._push_update({"callback_query": {"id": query_id, "from": chat.as_user(), "message": message,
                                                    "chat_instance": str(chat.id), "data": data}})
        return query_id

    async def user_inline(self, telegram_id: int, query: str) -> str:
        chat = self.chats[telegram_id]
        query_id = str(secrets.randbits(60))
        self.inline_queries[query_id] = {"chat_id": chat.id, "query": query, "results": None}
        await self._push_update({"inline_query": {"id": query_id, "from": chat.as_user(), "query": query,
                                                  "offset": "", "chat_type": "sender"}})
        return query_id

    def pick_inline(self, telegram_id: int, query_id: str, result_id: str) -> dict[str, Any]:
        """Posting an inline result into the person's chat (as Telegram does, "via @bot")."""
        chat = self.chats[telegram_id]
        results = (self.inline_queries.get(query_id) or {}).get("results") or []
        result = next((r for r in results if str(r.get("id")) == result_id), None)
        if result is None:
            raise bad("result not found")
        content = result.get("input_message_content") or {}
        text = content.get("message_text", "")
        plain, rendered = parse_html(text) if content.get("parse_mode", "").lower() == "html" else (text, html.escape(text))
        return self._store_message(chat, {"from": chat.as_user(), "via_bot": self.bot_user, "text": plain},
                                   html_text=rendered)

    async def _push_update(self, payload: dict[str, Any]) -> None:
        update = {"update_id": next(self._update_ids), **payload}
        self.updates.append(update)
        async with self._new_update:
            self._new_update.notify_all()

    def _publish(self, event: dict[str, Any]) -> None:
        event["seq"] = len(self.feed) + 1
        self.feed.append(event)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # outside the event loop (a test or setup): nobody can be waiting
            return
        task = loop.create_task(self._notify_feed())
        self._notifying.add(task)  # keep a reference until it ran (the loop holds tasks only weakly)
        task.add_done_callback(self._notifying.discard)

    async def _notify_feed(self) -> None:
        async with self._feed_changed:
            self._feed_changed.notify_all()

    async def close(self) -> None:
        """Answer every long poll now (the page's feed, getUpdates): the process is stopping, and a request
        left waiting would be cut off by the server with an error in the log."""
        self.closing = True
        for condition in (self._new_update, self._feed_changed):
            async with condition:
                condition.notify_all()

    async def wait_feed(self, after: int, timeout: float) -> list[dict[str, Any]]:
        """Events after `after` (for the page's long polling)."""
        if len(self.feed) <= after:
            async with self._feed_changed:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._feed_changed.wait_for(
                        lambda: len(self.feed) > after or self.closing), timeout)
        return self.feed[after:]

    # ------------------------------------------------------------------ limits

    def _rate_check(self, chat: ChatState) -> None:
        now = self.clock()
        if self.inject:
            raise ApiError(429, f"Too Many Requests: retry after {self.inject[0]}", retry_after=self.inject.popleft(),
                           limit="injected")
        window = self._global_window
        while window and now - window[0] >= 1.0:
            window.popleft()
        if len(window) >= self.limits.global_per_second:
            wait = max(1, math.ceil(1.0 - (now - window[0])))
            raise ApiError(429, f"Too Many Requests: retry after {wait}", retry_after=wait, limit="global")
        if chat.type == "private":
            chat.tokens = min(self.limits.private_burst,
                              chat.tokens + (now - chat.refilled_at) / self.limits.private_interval)
            chat.refilled_at = now
            if chat.tokens < 1:
                wait = max(1, math.ceil((1 - chat.tokens) * self.limits.private_interval))
                raise ApiError(429, f"Too Many Requests: retry after {wait}", retry_after=wait, limit="chat")
            chat.tokens -= 1
        else:
            while chat.window and now - chat.window[0] >= 60:
                chat.window.popleft()
            if len(chat.window) >= self.limits.group_per_minute:
                wait = max(1, math.ceil(60 - (now - chat.window[0])))
                raise ApiError(429, f"Too Many Requests: retry after {wait}", retry_after=wait, limit="group")
            chat.window.append(now)
        window.append(now)

    # ------------------------------------------------------------------ the Bot API

    async def call(self, method: str, params: dict[str, Any], files: dict[str, StoredFile] | None = None) -> Any:
        name = method.lower()
        handler = getattr(self, "m_" + name, None)
        self.calls.append((method, params))
        if handler is None:
            raise ApiError(404, "Not Found")
        if name in SEND_METHODS:
            chat = self._chat(_int(params, "chat_id"))
            self._rate_check(chat)
            self.stats["sent"] += 1
        return await handler(params, files or {})

    async def m_getme(self, params: dict, files: dict) -> dict:
        return self.bot_user

    async def m_logout(self, params: dict, files: dict) -> bool:
        return True

    async def m_close(self, params: dict, files: dict) -> bool:
        return True

    async def m_getupdates(self, params: dict, files: dict) -> list:
        if self.webhook["url"]:
            raise ApiError(409, "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook "
                                "to delete the webhook first")
        offset = _int(params, "offset", required=False) or 0
        limit = min(100, max(1, _int(params, "limit", required=False) or 100))
        timeout = max(0, min(50, _int(params, "timeout", required=False) or 0))
        allowed = _json(params, "allowed_updates")
        if offset > 0:
            self.updates = [u for u in self.updates if u["update_id"] >= offset]
        elif offset < 0:
            self.updates = self.updates[offset:]

        def pending() -> list:
            found = [u for u in self.updates if not allowed or any(k in u for k in allowed)]
            return found[:limit]
        if not pending() and timeout:
            async with self._new_update:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._new_update.wait_for(lambda: bool(pending()) or self.closing), timeout)
        return pending()

    async def m_setwebhook(self, params: dict, files: dict) -> bool:
        url = params.get("url") or ""
        if url and not re.match(r"^https?://", url):
            raise bad("invalid webhook URL specified")
        secret = params.get("secret_token")
        if secret is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", secret):
            raise bad("secret token contains unallowed characters")
        self.webhook = {"url": url, "secret_token": secret}
        if _bool(params.get("drop_pending_updates")):
            self.updates.clear()
        if url and self._webhook_task is None:
            self._webhook_task = asyncio.create_task(self._deliver_webhooks())
        return True

    async def m_deletewebhook(self, params: dict, files: dict) -> bool:
        self.webhook = {"url": "", "secret_token": None}
        if _bool(params.get("drop_pending_updates")):
            self.updates.clear()
        return True

    async def m_getwebhookinfo(self, params: dict, files: dict) -> dict:
        return {"url": self.webhook["url"], "has_custom_certificate": False,
                "pending_update_count": len(self.updates)}

    async def _deliver_webhooks(self) -> None:
        import aiohttp

        async with aiohttp.ClientSession() as http:
            while self.webhook["url"]:
                if not self.updates:
                    async with self._new_update:
                        with contextlib.suppress(asyncio.TimeoutError):
                            await asyncio.wait_for(self._new_update.wait_for(lambda: bool(self.updates)), 1)
                    continue
                update = self.updates[0]
                headers = {"X-Telegram-Bot-Api-Secret-Token": self.webhook["secret_token"]} \
                    if self.webhook["secret_token"] else {}
                try:
                    async with http.post(self.webhook["url"], json=update, headers=headers,
                                         timeout=aiohttp.ClientTimeout(total=30)) as response:
                        delivered = response.status < 300
                except (TimeoutError, aiohttp.ClientError):
                    delivered = False
                if delivered:
                    self.updates.pop(0)
                else:
                    await asyncio.sleep(1)
        self._webhook_task = None

    def _text(self, params: dict, key: str = "text", limit: int = TEXT_LIMIT,
              required: bool = True) -> tuple[str | None, str | None]:
        text = params.get(key)
        if text is None or text == "":
            if required:
                raise bad("message text is empty")
            return None, None
        text = str(text)
        if str(params.get("parse_mode") or "").lower() == "html":
            plain, rendered = parse_html(text)
        else:
            plain, rendered = text, html.escape(text)
        if required and not plain.strip():
            raise bad("message text is empty")
        if len(plain.encode("utf-16-le")) // 2 > limit:
            raise bad("message is too long" if key == "text" else "message caption is too long")
        return plain, rendered

    async def m_sendmessage(self, params: dict, files: dict) -> dict:
        chat = self._chat(_int(params, "chat_id"))
        plain, rendered = self._text(params)
        markup = _check_markup(_json(params, "reply_markup"))
        message: dict[str, Any] = {"from": self.bot_user, "text": plain}
        if markup and "inline_keyboard" in markup:
            message["reply_markup"] = markup
        stored = self._store_message(chat, message, html_text=rendered)
        if markup and "inline_keyboard" not in markup:
            self._publish({"type": "keyboard", "chat_id": chat.id, "markup": markup})
        return stored

    async def m_sendlocation(self, params: dict, files: dict) -> dict:
        chat = self._chat(_int(params, "chat_id"))
        try:
            lat, lon = float(params["latitude"]), float(params["longitude"])
        except (KeyError, TypeError, ValueError):
            raise bad("wrong latitude or longitude") from None
        if not (-90 <= lat <= 90 and -180 <= lon <= 180):
            raise bad("wrong latitude or longitude")
        return self._store_message(chat, {"from": self.bot_user, "location": {"latitude": lat, "longitude": lon}})

    def _file(self, params: dict, files: dict, key: str) -> tuple[str, StoredFile]:
        value = params.get(key)
        if key in files:
            stored = files[key]
        elif isinstance(value, str) and value.startswith("attach://") and value[9:] in files:
            stored = files[value[9:]]
        elif isinstance(value, str) and value in self.files:
            return value, self.files[value]
        else:
            raise bad("wrong file identifier/HTTP URL specified")
        file_id = "SB" + secrets.token_urlsafe(24)
        self.files[file_id] = stored
        return file_id, stored

    async def m_sendphoto(self, params: dict, files: dict) -> dict:
        chat = self._chat(_int(params, "chat_id"))
        file_id, stored = self._file(params, files, "photo")
        plain, rendered = self._text(params, "caption", CAPTION_LIMIT, required=False)
        width, height = _png_size(stored.data)
        message: dict[str, Any] = {"from": self.bot_user, "photo": [{
            "file_id": file_id, "file_unique_id": stored.file_unique_id, "width": width, "height": height,
            "file_size": len(stored.data)}]}
        if plain:
            message["caption"] = plain
        markup = _check_markup(_json(params, "reply_markup"))
        if markup and "inline_keyboard" in markup:
            message["reply_markup"] = markup
        return self._store_message(chat, message, html_text=rendered)

    async def m_senddocument(self, params: dict, files: dict) -> dict:
        chat = self._chat(_int(params, "chat_id"))
        file_id, stored = self._file(params, files, "document")
        plain, rendered = self._text(params, "caption", CAPTION_LIMIT, required=False)
        message: dict[str, Any] = {"from": self.bot_user, "document": {
            "file_id": file_id, "file_unique_id": stored.file_unique_id, "file_name": stored.name or "file",
            "mime_type": stored.mime or "application/octet-stream", "file_size": len(stored.data)}}
        if plain:
            message["caption"] = plain
        return self._store_message(chat, message, html_text=rendered)

    async def m_getfile(self, params: dict, files: dict) -> dict:
        file_id = params.get("file_id")
        stored = self.files.get(file_id)
        if stored is None:
            raise bad("invalid file_id")
        if len(stored.data) > DOWNLOAD_LIMIT:
            raise bad("file is too big")
        return {"file_id": file_id, "file_unique_id": stored.file_unique_id, "file_size": len(stored.data),
                "file_path": f"files/{file_id}"}

    def _message(self, params: dict, verb: str) -> tuple[ChatState, dict[str, Any]]:
        if params.get("inline_message_id"):
            raise bad("inline messages are not supported by the sandbox")
        chat = self._chat(_int(params, "chat_id"))
        message = chat.messages.get(_int(params, "message_id"))
        if message is None or message.get("deleted"):
            raise bad(f"message to {verb} not found")
        return chat, message

    async def m_editmessagetext(self, params: dict, files: dict) -> dict:
        chat, message = self._message(params, "edit")
        plain, rendered = self._text(params)
        markup = _check_markup(_json(params, "reply_markup"))
        if plain == message.get("text") and markup == message.get("reply_markup"):
            raise bad(NOT_MODIFIED)
        message["text"] = plain
        message["edit_date"] = int(time.time())
        _set_markup(message, markup)
        self._publish({"type": "edit", "chat_id": chat.id, "message": message, "html": rendered})
        return message

    async def m_editmessagereplymarkup(self, params: dict, files: dict) -> dict:
        chat, message = self._message(params, "edit")
        markup = _check_markup(_json(params, "reply_markup"))
        if markup == message.get("reply_markup") or (not markup and "reply_markup" not in message):
            raise bad(NOT_MODIFIED)
        _set_markup(message, markup)
        self._publish({"type": "edit", "chat_id": chat.id, "message": message, "html": None})
        return message

    async def m_deletemessage(self, params: dict, files: dict) -> bool:
        chat, message = self._message(params, "delete")
        message["deleted"] = True
        self._publish({"type": "delete", "chat_id": chat.id, "message_id": message["message_id"]})
        return True

    async def m_answercallbackquery(self, params: dict, files: dict) -> bool:
        query = self.callback_queries.get(str(params.get("callback_query_id")))
        if query is None or query["answered"]:
            raise bad("query is too old and response timeout expired or query ID is invalid")
        query["answered"] = True
        text = params.get("text")
        if text and len(text) > 200:
            raise bad("MESSAGE_TOO_LONG")
        if text:
            self._publish({"type": "alert" if _bool(params.get("show_alert")) else "toast",
                           "chat_id": query["chat_id"], "text": text})
        return True

    async def m_answerinlinequery(self, params: dict, files: dict) -> bool:
        query = self.inline_queries.get(str(params.get("inline_query_id")))
        if query is None or query["results"] is not None:
            raise bad("query is too old and response timeout expired or query ID is invalid")
        results = _json(params, "results") or []
        if len(results) > 50:
            raise bad("RESULTS_TOO_MUCH")
        query["results"] = results
        self._publish({"type": "inline_results", "chat_id": query["chat_id"], "query_id": params["inline_query_id"],
                       "query": query["query"], "results": [
                           {"id": r.get("id"), "title": r.get("title"), "description": r.get("description")}
                           for r in results]})
        return True

    async def m_sendchataction(self, params: dict, files: dict) -> bool:
        self._chat(_int(params, "chat_id"))
        return True

    def _scope_key(self, params: dict) -> tuple[str, str]:
        scope = _json(params, "scope") or {"type": "default"}
        return json.dumps(scope, sort_keys=True), params.get("language_code") or ""

    async def m_setmycommands(self, params: dict, files: dict) -> bool:
        commands = _json(params, "commands")
        if not isinstance(commands, list) or len(commands) > 100:
            raise bad("commands must be an array of at most 100 commands")
        for command in commands:
            if not re.fullmatch(r"[a-z0-9_]{1,32}", str(command.get("command", ""))):
                raise bad("BOT_COMMAND_INVALID")
            if not 1 <= len(command.get("description", "")) <= 256:
                raise bad("BOT_COMMAND_DESCRIPTION_INVALID")
        self.commands[self._scope_key(params)] = commands
        return True

    async def m_getmycommands(self, params: dict, files: dict) -> list:
        return self.commands.get(self._scope_key(params), [])

    async def m_deletemycommands(self, params: dict, files: dict) -> bool:
        self.commands.pop(self._scope_key(params), None)
        return True

    async def m_setchatmenubutton(self, params: dict, files: dict) -> bool:
        return True

    async def m_getchat(self, params: dict, files: dict) -> dict:
        return self._chat(_int(params, "chat_id")).as_chat()

    def menu_for(self, telegram_id: int, language_code: str | None) -> list[dict[str, Any]]:
        """The command menu a person sees: their chat's scope first, then the default for their language."""
        lang = (language_code or "")[:2]
        for scope in ({"chat_id": telegram_id, "type": "chat"}, {"type": "default"}):
            key = json.dumps(scope, sort_keys=True)
            for language in (lang, ""):
                if (key, language) in self.commands:
                    return self.commands[(key, language)]
        return []
