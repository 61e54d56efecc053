"""The outbox sender: drains the outbox within Telegram's limits; one per process, several may run.

- At most 30 messages a second overall, one a second per private chat, 20 a minute per group
  (sliding windows with a small safety margin, so a server counting arrivals never sees more).
- A 429 blocks that chat for `retry_after` seconds and puts the message back without spending an attempt.
- Network trouble, 5xx answers and replies that are not Telegram's JSON (a proxy's error page) are
  retried with exponential backoff (2, 4, 8 … up to 5 minutes); each counts as an attempt, and after
  outbox.MAX_ATTEMPTS the row is failed with the last reason. A photo or file missing at send time fails
  the row at once (permanent).
- Bot blocked / chat not found: the user is marked unreachable and their queue is failed with the reason.
- Messages are claimed a batch at a time (services.outbox.claim: each chat's oldest due message, for a
  lease, `FOR UPDATE SKIP LOCKED` on PostgreSQL), so several senders (one per process) share the outbox,
  never send the same row and keep each chat's order. Each claimed message gets a send slot from the
  limiter, waits for it, and is sent, then marked sent with Telegram's message_id, in one unit that a stop
  request does not interrupt: a stopped sender finishes the messages in flight and gives back the rows it
  claimed and did not send, so a restart neither loses nor repeats one. A sender killed outright leaves its
  rows claimed until the lease ends; then any sender takes them. A send is never started on a row whose
  lease could end before the request's timeout. (Only a hard kill between Telegram's answer and the commit
  can repeat a message; Telegram has no idempotency key to prevent that.)
- The limits: one process alone keeps them with the in-process `RateLimiter`; several senders share them
  through Redis (bot.shared_limits, installed per bot). Either way a send goes at its reserved slot or not
  at all: a send that wakes up later than `fresh` seconds after its slot (a loaded machine) takes a new slot,
  so sends never bunch up beyond the reservations' spacing.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass
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


@dataclass
class Reservation:
    """A limiter's answer to "may this chat get a message?": granted, a slot at `at` (time.monotonic) that is
    this send's alone; refused, ask again in `retry_in` seconds — because of the chat (its gap, a 429) or,
    with `chat=False`, because the bot's overall rate is taken that far ahead."""

    granted: bool
    at: float = 0.0
    retry_in: float = 0.0
    chat: bool = True


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
        self._record_at(chat_id, self.clock())

    async def reserve(self, chat_id: int, horizon: float = 1.0) -> Reservation:
        """A send slot for this chat at most `horizon` seconds ahead, taken at once (see Reservation)."""
        chat_wait = self.chat_wait(chat_id)
        if chat_wait > 0:
            return Reservation(False, retry_in=chat_wait)
        now = self.clock()
        while self.recent and self.recent[0] <= now - 1 - self.margin:
            self.recent.popleft()
        at = max(now, self.next_at)  # the even cadence
        # and the sliding window: fewer than per_second sends (reserved ones included) in the second up to `at`
        window = sorted(t for t in self.recent if t > at - 1 - self.margin)
        if len(window) >= self.per_second:
            at = window[len(window) - self.per_second] + 1 + self.margin
        if at - now > horizon:
            return Reservation(False, retry_in=at - now - horizon, chat=False)
        self._record_at(chat_id, at)
        return Reservation(True, at=at)

    def _record_at(self, chat_id: int, now: float) -> None:
        # Keep the cadence: a send that woke up a little late does not push every later slot back (sleeps
        # always overshoot a bit); after an idle spell the cadence starts again from now.
        self.next_at = (self.next_at if self.next_at > now - self.spacing else now) + self.spacing
        self.recent.append(now)
        if chat_id < 0:
            self.group_recent[chat_id].append(now)
        else:
            self.last_private[chat_id] = max(now, self.last_private.get(chat_id, now))  # a reserved slot may be later

    def block(self, chat_id: int, seconds: float) -> None:
        self.blocked[chat_id] = max(self.blocked.get(chat_id, 0.0), self.clock() + seconds)


def backoff(attempts: int) -> timedelta:
    return timedelta(seconds=min(300, 2 ** max(1, attempts)))


@dataclass
class Claimed:
    row: OutboxMessage
    until: datetime  # the claim's lease end, as written (its token for outbox.release)
    at: float  # time.monotonic() of the claim
    ask_at: float = 0.0  # not worth asking the limiter again before this (monotonic)


HOLD_SECONDS = 5.0  # a claimed row whose chat cannot have a slot within this long is given back
RETRY_SOON = 5.0  # a drain waits for a chat held this long at most by a 429 (beyond, the next run sends it)


class Sender:
    """Drains the outbox: claims a batch (`batch` rows, at most one per chat), reserves each a slot with the
    limiter (at most `horizon` seconds ahead, at most `concurrency` at a time), sends each at its slot.
    Rows are claimed for `lease`; a send is started only while `request_timeout` + 5 s of the lease are left,
    and the request is given up after `request_timeout` seconds (then retried as a network error)."""

    def __init__(self, bot: Bot, sessions: async_sessionmaker[AsyncSession], *, limiter=None,
                 concurrency: int = 16, batch: int = 60, now: Callable[[], datetime] = utcnow,
                 lease: timedelta = outbox.LEASE, request_timeout: int = 30, horizon: float = 1.0,
                 fresh: float = 0.025) -> None:
        self.bot, self.sessions = bot, sessions
        self.limiter = limiter or RateLimiter()
        self.slots = asyncio.Semaphore(concurrency)
        self.batch, self.now, self.lease = batch, now, lease
        self.request_timeout, self.horizon, self.fresh = request_timeout, horizon, fresh
        # The latest moment (seconds after the claim) a send may start: it ends, or times out, in the lease.
        self.start_within = lease.total_seconds() - request_timeout - 5
        if self.start_within < horizon + fresh + 1:
            raise ValueError("the lease must be longer than request_timeout + horizon + 6 s")
        self.in_flight: set[asyncio.Task] = set()
        self.held: dict[int, Claimed] = {}  # claimed, waiting for a send slot
        self.waiting: dict[int, float] = {}  # chat → until when (monotonic) it is not claimed: its limits
        self.retry_soon: dict[int, float] = {}  # chat → when (monotonic) its message held by a 429 comes due
        self.last_claim = -1e9
        self.started = 0  # sends started (a slot missed and taken again is one send)
        self.finished = 0  # deliveries ended (sent, rescheduled, failed or given back)

    async def drain(self, *, until_idle: bool = True, max_seconds: float | None = None) -> int:
        """Send what is ready; with until_idle, keep going while rows are ready (and not just rate-limited).
        Returns how many deliveries were started. On cancellation, messages in flight are finished and the
        rows claimed but not started are given back."""
        first, deadline = self.started, (time.monotonic() + max_seconds) if max_seconds else None
        try:
            while True:
                over = deadline is not None and time.monotonic() > deadline
                finished = self.finished
                claimed = 0 if over else await self._claim()
                progressed, pause = await self._start_held()
                if not until_idle or over:
                    await self.wait_in_flight()
                    await self._release(list(self.held.values()))
                    return self.started - first
                if claimed or progressed or self.finished != finished:
                    continue  # (a send that ended meanwhile may have made its chat's next message claimable)
                if self.in_flight:
                    await asyncio.wait(self.in_flight, timeout=pause, return_when=asyncio.FIRST_COMPLETED)
                elif self.held:
                    await asyncio.sleep(pause)
                else:
                    # A chat held by a short 429 is waited for (until claimed, or half a second past due).
                    now = time.monotonic()
                    self.retry_soon = {c: at for c, at in self.retry_soon.items() if at + 0.5 > now}
                    if not self.retry_soon:
                        log.debug("drained: nothing ready")
                        return self.started - first
                    await asyncio.sleep(max(0.02, min(self.retry_soon.values()) - now + 0.01))
        except asyncio.CancelledError:
            await self.wait_in_flight()
            await self._release(list(self.held.values()))
            raise

    async def _claim(self) -> int:
        """Claim more rows when fewer than half a batch are held (at most every 0.2 s unless none is)."""
        mono = time.monotonic()
        room = self.batch - len(self.held) - len(self.in_flight)
        if room <= 0 or (self.held and (len(self.held) > self.batch // 2 or mono - self.last_claim < 0.2)):
            return 0
        self.waiting = {chat: until for chat, until in self.waiting.items() if until > mono}
        skip = set(self.waiting) | {c.row.chat_id for c in self.held.values()}
        now = self.now()
        async with self.sessions() as session, session.begin():
            rows = await outbox.claim(session, now, limit=room, skip_chats=skip, lease=self.lease)
        self.last_claim = time.monotonic()
        log.debug("claimed %s", [(row.id, row.chat_id) for row in rows])
        for row in rows:
            self.held[row.id] = Claimed(row, now + self.lease, mono)
            self.retry_soon.pop(row.chat_id, None)
        return len(rows)

    async def _start_held(self) -> tuple[int, float]:
        """Reserve slots for held rows, oldest first, and start their sends; returns how many started and
        how long to pause before trying the others."""
        progressed, give_back, asks = 0, [], []
        for claimed in sorted(self.held.values(), key=lambda c: c.row.id):
            mono = time.monotonic()
            if mono - claimed.at > self.start_within - self.horizon - self.fresh:
                give_back.append(claimed)  # a slot it got now might come after its lease allows a send
                continue
            if claimed.ask_at > mono:
                asks.append(claimed.ask_at - mono)
                continue
            if self.slots.locked():
                break  # the in-flight sends end first
            await self.slots.acquire()
            reservation = await self.limiter.reserve(claimed.row.chat_id, self.horizon)
            if not reservation.granted:
                self.slots.release()
                log.debug("no slot for %s: %s", claimed.row.id, reservation)
                retry_in = max(0.005, reservation.retry_in)
                asks.append(retry_in)
                if reservation.chat and retry_in > HOLD_SECONDS:
                    give_back.append(claimed)
                    self.waiting[claimed.row.chat_id] = time.monotonic() + retry_in
                elif reservation.chat:
                    claimed.ask_at = time.monotonic() + retry_in
                else:
                    break  # the bot's overall rate is taken: the next rows would wait as well
                continue
            del self.held[claimed.row.id]
            task = asyncio.ensure_future(asyncio.shield(self._deliver(claimed, reservation.at)))
            self.in_flight.add(task)
            task.add_done_callback(self.in_flight.discard)
            progressed += 1
        await self._release(give_back)
        return progressed, min(asks, default=0.05)

    async def _release(self, items: list[Claimed]) -> None:
        for claimed in items:
            self.held.pop(claimed.row.id, None)
        by_until: dict[datetime, list[int]] = {}
        for claimed in items:
            by_until.setdefault(claimed.until, []).append(claimed.row.id)
        if not by_until:
            return
        log.debug("giving back %s", [(c.row.id, c.row.chat_id) for c in items])
        try:
            async with self.sessions() as session, session.begin():
                for until, ids in by_until.items():
                    await outbox.release(session, ids, until)
        except Exception:  # the leases end on their own
            log.exception("giving back %d claimed outbox rows failed", len(items))

    async def wait_in_flight(self) -> None:
        while self.in_flight:
            await asyncio.gather(*list(self.in_flight), return_exceptions=True)

    async def _deliver(self, claimed: Claimed, at: float) -> None:
        """Wait for the slot `at` and send; a slot missed by more than `fresh` seconds (the process was busy)
        is not used: a new one is reserved, or the row goes back to the held ones."""
        row = claimed.row
        try:
            while True:
                await asyncio.sleep(max(0.0, at - time.monotonic()))
                if time.monotonic() - at <= self.fresh:
                    break
                reservation = await self.limiter.reserve(row.chat_id, self.horizon)
                if not reservation.granted:
                    self.held[row.id] = claimed
                    return
                at = reservation.at
            if time.monotonic() - claimed.at > self.start_within:
                await self._release([claimed])
                return
            self.started += 1
            await self._send_and_record(row)
        except Exception:  # a bug or a database hiccup: the lease expires and the row is tried again
            log.exception("delivering outbox message %s failed", row.id)
        finally:
            self.finished += 1
            self.slots.release()

    async def _send_and_record(self, row: OutboxMessage) -> None:
        OWN_FLOOD_CONTROL.set(True)  # this task's context only: the sender reschedules a 429 itself
        try:
            sent = await self._send(row)
        except TelegramRetryAfter as exc:
            self.limiter.block(row.chat_id, exc.retry_after)
            if exc.retry_after <= RETRY_SOON:
                self.retry_soon[row.chat_id] = time.monotonic() + exc.retry_after
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
        timeout = self.request_timeout
        if row.photo:
            message = await self.bot.send_photo(row.chat_id, FSInputFile(row.photo), caption=row.text,
                                                reply_markup=markup, request_timeout=timeout)
        elif row.document:
            message = await self.bot.send_document(row.chat_id, FSInputFile(row.document), caption=row.text,
                                                   reply_markup=markup, request_timeout=timeout)
        else:
            message = await self.bot.send_message(row.chat_id, row.text or "", reply_markup=markup,
                                                  request_timeout=timeout)
        return message.message_id
