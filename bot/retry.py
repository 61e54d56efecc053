"""Direct replies survive Telegram's flood control: a request answered 429 with a short `retry_after` is
sent again after waiting; a text reply that would have to wait longer is queued in the outbox (in the
update's own transaction) and sent by the outbox sender when Telegram allows — never dropped. The outbox
sender has its own, fuller handling of 429s; this is for the handlers' immediate answers, which a person
is waiting for."""

from __future__ import annotations

import asyncio
import logging
import secrets
from contextvars import ContextVar
from datetime import timedelta

from aiogram import Bot
from aiogram.client.session.middlewares.base import BaseRequestMiddleware, NextRequestMiddlewareType
from aiogram.exceptions import TelegramNetworkError, TelegramRetryAfter
from aiogram.methods import Response, SendMessage, TelegramMethod
from aiogram.methods.base import TelegramType
from aiogram.types import Chat, InlineKeyboardMarkup, Message

log = logging.getLogger("fieldcrm.bot")
# Set by the outbox sender: it handles a 429 itself (per chat, without holding a worker).
OWN_FLOOD_CONTROL: ContextVar[bool] = ContextVar("own_flood_control", default=False)
# Set by bot.middlewares.DatabaseMiddleware while an update's transaction is open: where a reply that
# cannot be sent now is queued.
UPDATE_SESSION: ContextVar = ContextVar("update_session", default=None)


def limiter_for(bot: Bot):
    """The one limiter of this bot: the outbox sender paces by it, and direct replies are recorded in it, so
    a digest burst waits for a chat a person is talking to instead of racing the reply. The in-process
    RateLimiter (bot.sender), unless bot.shared_limits.install gave the bot the one shared through Redis."""
    limiter = getattr(bot, "_fieldcrm_limiter", None)
    if limiter is None:
        from bot.sender import RateLimiter

        limiter = RateLimiter()
        bot._fieldcrm_limiter = limiter
    return limiter


CONNECTION_RETRIES = 2
# aiohttp's errors (as aiogram words them) for a connection that was closed or never made: the request was
# not read by the server. A timeout ("Request timeout error") is not among them.
DROPPED = ("ServerDisconnectedError", "ClientConnectorError", "ClientConnectionResetError", "ClientOSError")


class RetryAfter(BaseRequestMiddleware):
    """Rule "a reply is never dropped for flood control": a direct reply answered 429 waits as told (at
    least a second) and is sent again — each wait up to `max_wait` seconds, all of them up to `max_total`
    (short: the reply is sent inside its update's transaction, which may hold SQLite's write lock). A text
    reply that would have to wait longer is queued in the outbox in the update's transaction (sent when
    Telegram's `retry_after` has passed, by the one sender and its limiter) and the handler goes on as if it
    was sent; other requests (edits, files, answers to taps) fail as before, and the update is rolled back
    and answered "try again". The chat is blocked for the outbox meanwhile, and every reply sent is
    recorded in the bot's one limiter. A connection dropped before the request was read (not a timeout) is
    tried again at once, twice at most."""

    def __init__(self, max_wait: float = 5.0, max_total: float = 10.0) -> None:
        self.max_wait, self.max_total = max_wait, max_total

    async def __call__(self, make_request: NextRequestMiddlewareType[TelegramType], bot: Bot,
                       method: TelegramMethod[TelegramType]) -> Response[TelegramType]:
        own = OWN_FLOOD_CONTROL.get()  # the outbox sender paces and records itself
        chat = getattr(method, "chat_id", None)
        chat = chat if isinstance(chat, int) else None
        waited = 0.0
        dropped = 0
        while True:
            try:
                response = await make_request(bot, method)
            except TelegramNetworkError as exc:
                # A kept-alive connection closed by the other side (reset, server disconnected) fails
                # before Telegram read the request: send it again on a new connection, twice at most. A
                # timeout is not retried — Telegram may have taken the message, and a person would see it twice.
                if own or dropped >= CONNECTION_RETRIES or not any(name in str(exc.message) for name in DROPPED):
                    raise
                dropped += 1
                log.info("connection dropped on %s (%s): sending again", type(method).__name__, exc.message)
                await asyncio.sleep(0.2 * dropped)
                continue
            except TelegramRetryAfter as flood:
                wait = max(1.0, float(flood.retry_after))  # a 0 would spin
                if own:
                    raise
                if chat is not None:
                    limiter_for(bot).block(chat, wait)
                if wait > self.max_wait or waited + wait > self.max_total:
                    queued = await _queue(method, wait)
                    if queued is None:
                        raise
                    return queued
                log.info("flood control on %s: retrying in %s s", type(method).__name__, wait)
                await asyncio.sleep(wait)
                waited += wait
                continue
            if chat is not None and not own:
                limiter_for(bot).record(chat)
            return response


async def _queue(method: TelegramMethod, wait: float) -> Response | None:
    """A text reply Telegram will not take for `wait` seconds, queued in the outbox in the update's
    transaction; the answer a handler gets back stands for the message to come (message_id 0)."""
    session = UPDATE_SESSION.get()
    if session is None or not isinstance(method, SendMessage) or not isinstance(method.chat_id, int):
        return None
    markup = method.reply_markup
    if markup is not None and not isinstance(markup, InlineKeyboardMarkup):
        return None  # a reply keyboard (share location …) only makes sense now
    from models import utcnow
    from services import outbox

    now = utcnow()
    await outbox.enqueue(session, key=f"reply:{method.chat_id}:{secrets.token_hex(8)}", chat_id=method.chat_id,
                         kind="reply", text=method.text,
                         reply_markup=markup.model_dump(mode="json", exclude_none=True) if markup else None,
                         not_before=now + timedelta(seconds=wait), now=now)
    log.warning("flood control on a reply to chat %s for %.0f s: queued in the outbox", method.chat_id, wait)
    chat = Chat(id=method.chat_id, type="private" if method.chat_id > 0 else "group")
    return Response(ok=True, result=Message(message_id=0, date=now, chat=chat, text=method.text))
