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


class RetryAfter(BaseRequestMiddleware):
    # Ten tries: while the outbox sender is sending a digest burst to the same chat (1 message/s per chat),
    # a reply can lose the race for a few seconds; it must arrive late rather than not at all. (Issue 18:
    # one limiter for replies and the outbox is the real fix.)
    def __init__(self, attempts: int = 10, max_wait: float = 5.0) -> None:
        self.attempts, self.max_wait = attempts, max_wait

    async def __call__(self, make_request: NextRequestMiddlewareType[TelegramType], bot: Bot,
                       method: TelegramMethod[TelegramType]) -> Response[TelegramType]:
        for attempt in range(self.attempts + 1):
            try:
                return await make_request(bot, method)
            except TelegramRetryAfter as flood:
                if OWN_FLOOD_CONTROL.get() or attempt == self.attempts or flood.retry_after > self.max_wait:
                    raise
                log.info("flood control on %s: retrying in %s s", type(method).__name__, flood.retry_after)
                await asyncio.sleep(flood.retry_after)
        raise AssertionError("unreachable")
