"""The single sender that drains the outbox within Telegram's limits.

- At most 30 messages a second overall, one a second per private chat, 20 a minute per group
  (sliding windows with a small safety margin, so a server counting arrivals never sees more).
- A 429 blocks that chat for `retry_after` seconds and puts the message back without spending an attempt.
- Network trouble, 5xx answers and replies that are not Telegram's JSON (a proxy's error page) are
  retried with exponential backoff (2, 4, 8 … up to 5 minutes); each counts as an attempt, and after
  outbox.MAX_ATTEMPTS the row is failed with the last reason. A photo or file missing at send time fails
  the row at once (permanent).
- Bot blocked / chat not found: the user is marked unreachable and their queue is failed with the reason.
- Each message is claimed (a lease), sent, and marked sent with Telegram's message_id in one unit that a
  stop request does not interrupt: a stopped sender finishes the messages in flight, so a restart
  neither loses nor repeats one. (Only a hard kill between Telegram's answer and the commit can repeat
  a message; Telegram has no idempotency key to prevent that.)
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import defaultdict, deque
from collections.abc import Callable
from datetime import datetime, timedelta

from aiogram import Bot
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramNotFound,
    TelegramRetryAfter,
)
from aiogram.types import FSInputFile, InlineKeyboardMarkup
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.retry import OWN_FLOOD_CONTROL
from models import OutboxMessage, utcnow
from services import outbox

log = logging.getLogger("fieldcrm.sender")
GONE = ("chat not found", "user is deactivated", "bot was blocked", "bot was kicked", "peer_id_invalid",
        "have no rights to send", "not enough rights")


class RateLimiter:
    """Telegram's sending limits, as sliding windows over a monotonic clock."""

    def __init__(self, per_second: int = 30, private_gap: float = 1.0, group_per_minute: int = 20,
                 margin: float = 0.02, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_second, self.private_gap, self.group_per_minute = per_second, private_gap, group_per_minute
        self.margin, self.clock = margin, clock
        # Sends are also paced evenly (a little under the limit): a burst of 30 would reach Telegram
        # bunched up by network jitter and be counted as 31 in some second.
        self.spacing = 1.0 / (per_second - 0.2) if per_second > 1 else 0.0
        self.next_at = 0.0  # the next send's slot in that even cadence
        self.recent: deque[float] = deque()
        self.last_private: dict[int, float] = {}
        self.group_recent: dict[int, deque[float]] = defaultdict(deque)
        self.blocked: dict[int, float] = {}

    def chat_wait(self, chat_id: int) -> float:
        """Seconds until this chat may get another message."""
        now = self.clock()
        wait = max(0.0, self.blocked.get(chat_id, 0.0) - now)
        if chat_id < 0:  # groups and channels
            window = self.group_recent[chat_id]
            while window and window[0] <= now - 60 - self.margin:
                window.popleft()
            if len(window) >= self.group_per_minute:
                wait = max(wait, window[0] + 60 + self.margin - now)
        elif chat_id in self.last_private:
            wait = max(wait, self.last_private[chat_id] + self.private_gap + self.margin - now)
        return wait

    def global_wait(self) -> float:
        now = self.clock()
        while self.recent and self.recent[0] <= now - 1 - self.margin:
            self.recent.popleft()
        if len(self.recent) >= self.per_second:
            return self.recent[0] + 1 + self.margin - now
        return max(0.0, self.next_at - now)

    def record(self, chat_id: int) -> None:
        now = self.clock()
        # Keep the cadence: a send that woke up a little late does not push every later slot back (sleeps
        # always overshoot a bit); after an idle spell the cadence starts again from now.
        self.next_at = (self.next_at if self.next_at > now - self.spacing else now) + self.spacing
        self.recent.append(now)
        if chat_id < 0:
            self.group_recent[chat_id].append(now)
        else:
            self.last_private[chat_id] = now

    def block(self, chat_id: int, seconds: float) -> None:
        self.blocked[chat_id] = max(self.blocked.get(chat_id, 0.0), self.clock() + seconds)


def backoff(attempts: int) -> timedelta:
    return timedelta(seconds=min(300, 2 ** max(1, attempts)))


class Sender:
    def __init__(self, bot: Bot, sessions: async_sessionmaker[AsyncSession], *, limiter: RateLimiter | None = None,
                 concurrency: int = 16, batch: int = 500, now: Callable[[], datetime] = utcnow) -> None:
        self.bot, self.sessions = bot, sessions
        self.limiter = limiter or RateLimiter()
        self.slots = asyncio.Semaphore(concurrency)
        self.batch, self.now = batch, now
        self.in_flight: set[asyncio.Task] = set()
        self.busy: set[int] = set()  # chats with a message in flight (keeps each chat's order)

    async def drain(self, *, until_idle: bool = True, max_seconds: float | None = None) -> int:
        """Send what is ready; with until_idle, keep going while rows are ready (and not just rate-limited).
        Returns how many deliveries were started. On cancellation, messages in flight are finished."""
        started, deadline = 0, (time.monotonic() + max_seconds) if max_seconds else None
        try:
            while True:
                async with self.sessions() as session:
                    rows = await outbox.ready(session, self.now(), limit=self.batch)
                rows = [r for r in rows if r.chat_id not in self.busy]
                if not rows:
                    if self.in_flight:
                        await asyncio.wait(self.in_flight, return_when=asyncio.FIRST_COMPLETED)
                        continue
                    return started
                progressed = 0
                seen: set[int] = set()
                for row in rows:
                    if row.chat_id in seen or row.chat_id in self.busy:
                        continue
                    seen.add(row.chat_id)
                    if self.limiter.chat_wait(row.chat_id) > 0:
                        continue
                    while (wait := self.limiter.global_wait()) > 0:
                        await asyncio.sleep(wait)
                    if self.limiter.chat_wait(row.chat_id) > 0:
                        continue
                    await self.slots.acquire()
                    self.limiter.record(row.chat_id)
                    self.busy.add(row.chat_id)
                    task = asyncio.ensure_future(asyncio.shield(self._deliver(row)))
                    self.in_flight.add(task)
                    task.add_done_callback(self.in_flight.discard)
                    progressed += 1
                started += progressed
                if not until_idle or (deadline and time.monotonic() > deadline):
                    await self.wait_in_flight()
                    return started
                if not progressed:
                    waits = [self.limiter.chat_wait(r.chat_id) for r in rows if r.chat_id not in self.busy]
                    pause = min([w for w in waits if w > 0], default=0.05)
                    if self.in_flight:
                        await asyncio.wait(self.in_flight, timeout=pause, return_when=asyncio.FIRST_COMPLETED)
                    else:
                        if pause > 5:  # everything ready is blocked for a while: come back on the next run
                            return started
                        await asyncio.sleep(pause)
        except asyncio.CancelledError:
            await self.wait_in_flight()
            raise

    async def wait_in_flight(self) -> None:
        while self.in_flight:
            await asyncio.gather(*list(self.in_flight), return_exceptions=True)

    async def _deliver(self, row: OutboxMessage) -> None:
        try:
            async with self.sessions() as session, session.begin():
                if not await outbox.claim(session, row.id, self.now()):
                    return
            await self._send_and_record(row)
        except Exception:  # a bug or a database hiccup: the lease expires and the row is tried again
            log.exception("delivering outbox message %s failed", row.id)
        finally:
            self.busy.discard(row.chat_id)
            self.slots.release()

    async def _send_and_record(self, row: OutboxMessage) -> None:
        OWN_FLOOD_CONTROL.set(True)  # this task's context only: the sender reschedules a 429 itself
        try:
            sent = await self._send(row)
        except TelegramRetryAfter as exc:
            self.limiter.block(row.chat_id, exc.retry_after)
            await self._record(outbox.retry_later, row.id, self.now() + timedelta(seconds=exc.retry_after),
                               f"429 retry after {exc.retry_after}s", count_attempt=False)
        except (TelegramForbiddenError, TelegramNotFound) as exc:
            await self._record(outbox.mark_unreachable, row.chat_id, exc.message, self.now())
        except TelegramBadRequest as exc:
            if any(reason in exc.message.lower() for reason in GONE):
                await self._record(outbox.mark_unreachable, row.chat_id, exc.message, self.now())
            else:
                await self._record(outbox.fail, row.id, f"bad request: {exc.message}")
        except FileNotFoundError as exc:  # the chart or spreadsheet is gone: sending again cannot help
            await self._record(outbox.fail, row.id, f"file missing: {exc.filename}")
        except Exception as exc:
            # Every failure spends an attempt, so no row is retried forever; after MAX_ATTEMPTS it is failed
            # with this reason (services.outbox.retry_later).
            await self._record(outbox.retry_later, row.id, self.now() + backoff(row.attempts + 1),
                               f"{type(exc).__name__}: {exc}")
        else:
            await self._record(outbox.mark_sent, row.id, sent, self.now())

    async def _record(self, action, *args, **kwargs) -> None:
        async with self.sessions() as session, session.begin():
            await action(session, *args, **kwargs)

    async def _send(self, row: OutboxMessage) -> int:
        markup = InlineKeyboardMarkup.model_validate(row.reply_markup) if row.reply_markup else None
        for path in (row.photo, row.document):
            if path and not os.path.isfile(path):
                raise FileNotFoundError(2, "No such file", path)
        if row.photo:
            message = await self.bot.send_photo(row.chat_id, FSInputFile(row.photo), caption=row.text,
                                                reply_markup=markup)
        elif row.document:
            message = await self.bot.send_document(row.chat_id, FSInputFile(row.document), caption=row.text,
                                                   reply_markup=markup)
        else:
            message = await self.bot.send_message(row.chat_id, row.text or "", reply_markup=markup)
        return message.message_id
