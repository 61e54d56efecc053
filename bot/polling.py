"""Long polling that confirms an update only after it was handled.

aiogram's own polling moves the getUpdates offset past an update as soon as it has started handling it,
so a process killed mid-update has confirmed an update it never committed: that action is lost without
a trace. Here the offset sent to Telegram is always the oldest update still being handled (or one past
the newest when none is), so Telegram keeps, and after a restart redelivers, everything not finished.
A redelivered update that had in fact committed is recognised by its id (services.updates) and skipped.

Updates are still handled as concurrent tasks; the dispatcher's event isolation keeps one chat's
updates in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from aiogram import Bot
from aiogram import Dispatcher as AiogramDispatcher
from aiogram.exceptions import ClientDecodeError
from aiogram.methods import GetUpdates
from aiogram.types import Update
from aiogram.utils.backoff import Backoff, BackoffConfig
from pydantic import ValidationError

log = logging.getLogger("fieldcrm.polling")
STOP_GRACE_SECONDS = 25  # a stop waits this long for the updates being handled
COPIES_WAIT = 0.25  # while an update runs long, getUpdates is asked again this often (new ones wait at most this)


class Ledger:
    """Which updates were handed out and which of those finished; the offset that confirms only finished ones."""

    def __init__(self) -> None:
        self.running: set[int] = set()
        self.finished: set[int] = set()  # finished but above the offset (an older one is still running)
        self.newest: int | None = None
        self.confirmed = 0  # every update below this finished (the highest offset so far)

    def take(self, update_id: int) -> bool:
        """True when this update should be handled now: not running, not finished in this run. A copy of an
        update below the offset (an answer made before that update finished, still on its way) is
        never handed out again: Telegram hands out updates in order, so below the offset all finished."""
        if update_id < self.confirmed or update_id in self.running or update_id in self.finished:
            return False
        self.running.add(update_id)
        self.newest = update_id if self.newest is None else max(self.newest, update_id)
        return True

    def done(self, update_id: int) -> None:
        self.running.discard(update_id)
        self.finished.add(update_id)
        floor = self.offset()
        if floor is not None:
            self.confirmed = max(self.confirmed, floor)
        self.finished = {i for i in self.finished if i >= self.confirmed}

    def offset(self) -> int | None:
        """getUpdates confirms every update below the offset."""
        if self.running:
            return min(self.running)
        return None if self.newest is None else self.newest + 1


def readable(data: Any, ledger: Ledger, bot: Bot) -> list[Update]:
    """The updates of a getUpdates answer that did not parse as a whole, one by one. Fields some Bot API
    servers leave out (telegram-test-api sends button taps without chat_instance and without the
    message's id and date) are filled in; an update that still cannot be read is logged and confirmed,
    so it is skipped instead of blocking the chat's queue forever."""
    raw = data.get("result") if isinstance(data, dict) else None
    updates: list[Update] = []
    for item in raw if isinstance(raw, list) else []:
        if not isinstance(item, dict) or not isinstance(item.get("update_id"), int):
            continue
        query = item.get("callback_query")
        if isinstance(query, dict):
            query.setdefault("chat_instance", "")
            if isinstance(query.get("message"), dict):
                query["message"].setdefault("message_id", 0)
                query["message"].setdefault("date", 0)
        try:
            updates.append(Update.model_validate(item, context={"bot": bot}))
        except ValidationError as exc:
            log.error("update %s cannot be read and is skipped: %s", item["update_id"], exc.errors()[:3])
            ledger.take(item["update_id"])
            ledger.done(item["update_id"])
    return updates


class Dispatcher(AiogramDispatcher):
    async def _polling(self, bot: Bot, polling_timeout: int = 30, handle_as_tasks: bool = True,
                       backoff_config: BackoffConfig | None = None, allowed_updates: list[str] | None = None,
                       tasks_concurrency_limit: int | None = None, **kwargs: Any) -> None:
        from aiogram.utils.backoff import BackoffConfig as Config

        backoff = Backoff(config=backoff_config or Config(min_delay=1.0, max_delay=5.0, factor=1.3, jitter=0.1))
        ledger, tasks = Ledger(), set()
        request: dict[str, Any] = {}
        if bot.session.timeout:
            request["request_timeout"] = int(bot.session.timeout + polling_timeout)
        user = await bot.me()
        log.info("polling for @%s (updates confirmed after their transaction)", user.username)
        try:
            while True:
                call = GetUpdates(offset=ledger.offset(), timeout=polling_timeout, allowed_updates=allowed_updates)
                try:
                    updates = await bot(call, **request)
                except ClientDecodeError as exc:  # one malformed update must not wedge every later one
                    updates = readable(exc.data, ledger, bot)
                    if not updates:  # not Telegram's JSON at all (a proxy's error page): wait as for any failure
                        log.error("getUpdates answer cannot be read (%s); trying again in %.1f s", exc.message,
                                  backoff.next_delay)
                        await backoff.asleep()
                        continue
                except Exception as exc:
                    log.error("getUpdates failed (%s: %s); trying again in %.1f s", type(exc).__name__, exc,
                              backoff.next_delay)
                    await backoff.asleep()
                    continue
                backoff.reset()
                started = 0
                for update in updates:
                    if not ledger.take(update.update_id):
                        continue
                    started += 1
                    task = asyncio.create_task(self._handle(bot, update, ledger, **kwargs))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                if updates and not started and tasks:
                    # Only copies of updates still being handled came back (Telegram answers at once while
                    # an update is unconfirmed): wait for one to finish, but not longer than COPIES_WAIT —
                    # a new message must not wait behind one slow update (e.g. a reply in a 429 wait).
                    await asyncio.wait(tasks, timeout=COPIES_WAIT, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if tasks:
                _, late = await asyncio.wait(tasks, timeout=STOP_GRACE_SECONDS)
                for task in late:
                    task.cancel()
            if ledger.offset() is not None:
                with contextlib.suppress(Exception):  # confirm what finished; the rest comes back after a restart
                    await asyncio.wait_for(bot(GetUpdates(offset=ledger.offset(), timeout=0, limit=1)), 5)

    async def _handle(self, bot: Bot, update: Any, ledger: Ledger, **kwargs: Any) -> None:
        try:
            await self._process_update(bot=bot, update=update, **kwargs)
        finally:
            ledger.done(update.update_id)
