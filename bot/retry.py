"""Direct replies survive Telegram's flood control: a request answered 429 with a short `retry_after` is
sent again after waiting (at most `attempts` times, and only for waits of up to `max_wait` seconds —
anything longer fails as before). The outbox sender has its own, fuller handling of 429s; this is for the
handlers' immediate answers, which a person is waiting for."""

from __future__ import annotations

import asyncio
import logging
from contextvars import ContextVar

from aiogram import Bot
from aiogram.client.session.middlewares.base import BaseRequestMiddleware, NextRequestMiddlewareType
from aiogram.exceptions import TelegramRetryAfter
from aiogram.methods import Response, TelegramMethod
from aiogram.methods.base import TelegramType

log = logging.getLogger("fieldcrm.bot")
# Set by the outbox sender: it handles a 429 itself (per chat, without holding a worker).
OWN_FLOOD_CONTROL: ContextVar[bool] = ContextVar("own_flood_control", default=False)


def limiter_for(bot: Bot):
    """The one RateLimiter (bot.sender) of this bot: the outbox sender paces by it, and direct replies are
    recorded in it, so a digest burst waits for a chat a person is talking to instead of racing the reply."""
    limiter = getattr(bot, "_fieldcrm_limiter", None)
    if limiter is None:
        from bot.sender import RateLimiter

        limiter = RateLimiter()
        bot._fieldcrm_limiter = limiter
    return limiter


class RetryAfter(BaseRequestMiddleware):
    """Rule "a reply is not dropped for flood control": a direct reply answered 429 waits as told (at least
    a second) and is sent again — each wait up to `max_wait` seconds, all of them up to `max_total`, which
    stays under SQLite's 30 s busy timeout because a reply is sent inside its update's transaction (a longer
    ban fails as before, and the update is rolled back and answered "try again") — and the chat is blocked
    for the outbox meanwhile; every reply sent is recorded in the bot's one limiter."""

    def __init__(self, max_wait: float = 10.0, max_total: float = 25.0) -> None:
        self.max_wait, self.max_total = max_wait, max_total

    async def __call__(self, make_request: NextRequestMiddlewareType[TelegramType], bot: Bot,
                       method: TelegramMethod[TelegramType]) -> Response[TelegramType]:
        own = OWN_FLOOD_CONTROL.get()  # the outbox sender paces and records itself
        chat = getattr(method, "chat_id", None)
        chat = chat if isinstance(chat, int) else None
        waited = 0.0
        while True:
            try:
                response = await make_request(bot, method)
            except TelegramRetryAfter as flood:
                wait = max(1.0, float(flood.retry_after))  # a 0 would spin
                if own or wait > self.max_wait or waited + wait > self.max_total:
                    raise
                if chat is not None:
                    limiter_for(bot).block(chat, wait)
                log.info("flood control on %s: retrying in %s s", type(method).__name__, wait)
                await asyncio.sleep(wait)
                waited += wait
                continue
            if chat is not None and not own:
                limiter_for(bot).record(chat)
            return response
