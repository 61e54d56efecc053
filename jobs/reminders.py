"""Scheduled work: scan the data for reminders, write digests and urgent notices to the outbox, drain it.

Each job is a plain coroutine over a `Runtime` (the database and the bot); the scheduler
(jobs.scheduler) calls them with no arguments but ids, so a job can run anywhere, any number of times:
everything it writes is keyed (services.reminders, services.outbox), a second run writes nothing new.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import os
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from zoneinfo import ZoneInfo

from sqlalchemy import case, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models import Customer, OutboxKind, OutboxMessage, Reminder, ReminderKind, User, utcnow
from services import outbox, reminders
from services.sql import collector_paused

if TYPE_CHECKING:
    from services.reports import Daily, Report

log = logging.getLogger("fieldcrm.jobs")


class Sender(Protocol):
    """What delivers the outbox (the bot's side: bot.sender.Sender)."""

    async def drain(self, *, max_seconds: float) -> int: ...


class Apart(Protocol):
    """Where long work runs beside the bot (bot.background.Background): `work` gets that place's sessions."""

    async def run(self, work: Callable[[async_sessionmaker[AsyncSession]], Awaitable[Any]]) -> Any: ...


class Presenter(Protocol):
    """How the messages the jobs queue are worded and laid out (the bot's side: bot.notify.BotPresenter).
    The jobs decide what is sent, to whom and when; they import nothing from the bot."""

    def agenda(self, items: list[reminders.AgendaItem], user: User, today) -> tuple[str, dict[str, Any] | None]: ...

    def escalation(self, items: list[reminders.AgendaItem], manager: User, today) -> tuple[str, dict[str, Any]]: ...

    def daily(self, digest: Daily, leader: User, currency: str) -> str: ...

    def weekly(self, report: Report, leader: User, currency: str) -> tuple[str, list[tuple[str, bytes]]]: ...


@dataclass
class Runtime:
    sessions: async_sessionmaker[AsyncSession]
    sender: Sender | None = None
    rules: reminders.Rules = field(default_factory=reminders.Rules)
    clock: object = utcnow  # a callable returning the current aware UTC time (the sandbox can move it)
    files_dir: Path = field(default_factory=lambda: Path(tempfile.gettempdir()) / "fieldcrm-reports")
    currency: str = "CNY"
    timezone: str = "Asia/Shanghai"  # the company's calendar (settings.default_timezone): what "yesterday" is
    longest_write: float = 0.0  # the longest write transaction a scan held, in seconds (see `scan`)
    answered: reminders.Watermark | None = None  # how far the scan's sweep has looked (none: a full sweep)
    present: Presenter | None = None  # needed by the jobs that queue messages
    background: Apart | None = None  # where the long jobs run (see `apart`); None: on the caller's loop

    @property
    def presenter(self) -> Presenter:
        if self.present is None:
            raise RuntimeError("this job queues messages: give the Runtime a presenter (bot.notify.BotPresenter)")
        return self.present

    def now(self) -> datetime:
        return self.clock()


async def apart(runtime: Runtime, job: Callable[..., Awaitable[Any]], *args: Any) -> Any:
    """Run a long job (scan, digests, managers' reports, RFM) in `runtime.background` — the bot's worker
    process (bot.background: rule "long work never holds the bot's loop"), not on the bot's loop. The job
    gets a copy of the runtime (pickled: no sender, the worker's own sessions); what it learns (the sweep's
    watermark, the longest write) is kept. `job` must be a module-level function."""
    if runtime.background is None:
        return await job(runtime, *args)
    portable = dataclasses.replace(runtime, sessions=None, sender=None, background=None)
    result, answered, longest = await runtime.background.run(functools.partial(_job_there, portable, job, args))
    runtime.answered = answered
    runtime.longest_write = max(runtime.longest_write, longest)
    return result


async def _job_there(runtime: Runtime, job: Callable[..., Awaitable[Any]], args: tuple,
                     sessions: async_sessionmaker[AsyncSession]) -> tuple[Any, reminders.Watermark | None, float]:
    """`apart`'s side in the worker process."""
    runtime.sessions = sessions
    result = await job(runtime, *args)
    return result, runtime.answered, runtime.longest_write


SCAN_BATCH = 250  # new reminders per transaction: with their escalation notices, ~0.05-0.1 s of the write lock
SWEEP_BATCH = 1000  # customers per transaction when closing what activity answered


async def scan(runtime: Runtime, now: datetime | None = None) -> int:
    """Create every reminder the rules call for; queue urgent notices for new escalations. Returns new rows.

    Rule "never hold the database for long": what is due is read first (no lock), then the new reminders
    are written SCAN_BATCH at a time, one short transaction each, yielding to the bot between them (the
    first scan after a big import creates hundreds of thousands), each batch with its escalation notices;
    the sweep comes last. `runtime.longest_write` keeps the longest write transaction (seconds)."""
    now = now or runtime.now()
    async with runtime.sessions() as session:
        due = await reminders.compute_due(session, now, rules=runtime.rules, ordered=True)
        open_keys = await reminders.open_reminder_keys(session)
    fresh = [d for d in due if d.key not in open_keys]
    if fresh and runtime.present is not None:
        runtime.present.escalation  # noqa: B018 - its wording loaded now (bot.presenter), not under the write lock
    new: list[int] = []
    for start in range(0, len(fresh), SCAN_BATCH):
        # No cycle-collector pass while the lock is held (one took 0.2 s at 100k customers). The time is
        # taken before the collector is on again: the pass that may follow holds no lock (at 1M customers,
        # with the due list alive, it took 0.25-0.35 s and was counted as a transaction before).
        with collector_paused():
            began = time.perf_counter()
            async with runtime.sessions() as session, session.begin():
                batch = await reminders.apply(session, fresh[start:start + SCAN_BATCH], now, sweep=False,
                                              open_keys=set())
                # The managers hear of this batch's escalations in the same transaction: a crash between
                # batches can never leave an escalation that nobody was told about.
                await _queue_escalations(runtime, session, batch, now)
                new += batch
            runtime.longest_write = max(runtime.longest_write, time.perf_counter() - began)
        await asyncio.sleep(0)  # let the bot answer between batches
    async with runtime.sessions() as session:
        mark, sweep = await reminders.sweep_targets(session, runtime.answered)
    for start in range(0, len(sweep), SWEEP_BATCH):  # what activity answered, a batch at a time
        with collector_paused():
            began = time.perf_counter()
            async with runtime.sessions() as session, session.begin():
                await reminders.close_answered(session, now, customer_ids=sweep[start:start + SWEEP_BATCH])
            runtime.longest_write = max(runtime.longest_write, time.perf_counter() - began)
        await asyncio.sleep(0)
    runtime.answered = mark  # only once every batch is committed
    log.info("reminder scan: %d due, %d new", len(due), len(new))
    return len(new)


async def _queue_escalations(runtime: Runtime, session: AsyncSession, new_ids: list[int], now: datetime) -> None:
    """Escalation rule: the manager hears of overdue customers at once — within their working hours, in one
    message per scan (the most urgent first, each with its buttons), not one message per customer."""
    if not new_ids:
        return
    rows = (await session.execute(select(Reminder.id, Reminder.user_id).where(
        Reminder.id.in_(new_ids[-5000:]), Reminder.kind == ReminderKind.escalation).order_by(Reminder.id))).all()
    by_manager: dict[int, list[int]] = {}
    for reminder_id, manager_id in rows:
        by_manager.setdefault(manager_id, []).append(reminder_id)
    for manager_id, ids in by_manager.items():
        manager = await session.get(User, manager_id)
        if manager is None or not outbox.reachable(manager):
            continue
        today = reminders.local_today(manager, now)
        items = sorted(await _items(session, manager, ids),  # what counts most first, then a fixed order
                       key=lambda i: (-reminders.importance(i, today), i.reminder.due_on, i.reminder.customer_id or 0,
                                      i.reminder.id))
        text, markup = runtime.presenter.escalation(items, manager, reminders.local_today(manager, now))
        await outbox.enqueue(session, key=f"urgent:escalation:{manager.id}:{ids[0]}:{len(ids)}",
                             chat_id=manager.telegram_id, user_id=manager.id, kind=OutboxKind.urgent, text=text,
                             reply_markup=markup, not_before=outbox.next_working_moment(manager, now), now=now)


async def _items(session: AsyncSession, user: User, ids: list[int]) -> list[reminders.AgendaItem]:
    """The reminders with their customers and (escalations) the reps who own them, read in three queries,
    not one per reminder: this runs inside a scan batch's write transaction (issue 18: 2,000 single reads
    held SQLite's write lock over a second)."""
    found = list((await session.execute(select(Reminder).where(Reminder.id.in_(ids)))).scalars())
    customer_ids = sorted({r.customer_id for r in found if r.customer_id})
    owner_ids = sorted({r.subject_id for r in found if r.kind == ReminderKind.escalation and r.subject_id})
    customers, owners = {}, {}
    for start in range(0, len(customer_ids), 5000):
        chunk = customer_ids[start:start + 5000]
        customers.update((c.id, c) for c in (await session.execute(select(Customer).where(Customer.id.in_(chunk))))
                         .scalars())
    if owner_ids:
        owners = {u.id: u for u in (await session.execute(select(User).where(User.id.in_(owner_ids)))).scalars()}
    items = []
    for reminder in found:
        item = reminders.AgendaItem(reminder, customers.get(reminder.customer_id))
        if reminder.kind == ReminderKind.escalation and reminder.subject_id:
            item.owner = owners.get(reminder.subject_id)
        items.append(item)
    return items


def digest_key(user: User, now: datetime) -> str:
    return f"digest:{user.id}:{reminders.local_today(user, now).isoformat()}"


async def plan_digests(runtime: Runtime, now: datetime | None = None) -> int:
    """Morning digest rule: once per local day per user, at the start of their working hours on a work day
    (or later that working day if the service was down), everything due, most urgent first. A user with
    nothing due gets no message. Returns how many digests were queued."""
    now = now or runtime.now()
    async with runtime.sessions() as session:
        users = list((await session.execute(select(User).where(
            User.active.is_(True), User.telegram_id.is_not(None), User.unreachable_at.is_(None)))).scalars())
        written = set((await session.execute(select(OutboxMessage.key).where(
            OutboxMessage.key.in_([digest_key(u, now) for u in users])))).scalars())
    waiting = [u for u in users if outbox.in_working_hours(u, now) and digest_key(u, now) not in written]
    if not waiting:
        return 0
    await scan(runtime, now)
    queued = 0
    # Each agenda is read first, then queued in a transaction of its own: composing all of them inside one
    # write transaction held SQLite's write lock for seconds at 100k customers (issue 18).
    for user in waiting:
        async with runtime.sessions() as session:
            items = await reminders.agenda(session, user, now)
            if not items:
                continue
            text, markup = runtime.presenter.agenda(items, user, reminders.local_today(user, now))
        async with runtime.sessions() as session, session.begin():
            if await outbox.enqueue(session, key=digest_key(user, now), chat_id=user.telegram_id, user_id=user.id,
                                    kind=OutboxKind.digest, text=text, reply_markup=markup, now=now):
                queued += 1
    log.info("digests queued: %d", queued)
    return queued


def weekly_key(user: User, now: datetime) -> str:
    year, week, _ = reminders.local_today(user, now).isocalendar()
    return f"report:weekly:{user.id}:{year}-W{week:02d}"


def daily_key(user: User, now: datetime) -> str:
    return f"report:daily:{user.id}:{reminders.local_today(user, now).isoformat()}"


async def plan_manager_reports(runtime: Runtime, now: datetime | None = None) -> int:
    """Daily digest rule: each manager and admin gets, at the start of their working hours on a work day,
    yesterday in their team (contacts, orders, new complaints, open escalations), once per local day.
    Weekly digest rule: each manager and admin gets, once per ISO week, on their first working moment of
    the week, the analyses of the last 7 days for their team (services.reports): the summary text and 2–4
    charts, through the outbox (same limits, never twice). Nobody in the team bought or did anything →
    still sent (a quiet week is news too). Returns how many digests were queued."""
    from services.access import viewer_for
    from services.reports import build, daily

    now = now or runtime.now()
    async with runtime.sessions() as session:
        leaders = list((await session.execute(select(User).where(
            User.active.is_(True), User.telegram_id.is_not(None), User.unreachable_at.is_(None),
            User.role.in_(["manager", "admin"])))).scalars())
        written = set((await session.execute(select(OutboxMessage.key).where(OutboxMessage.key.in_(
            [weekly_key(u, now) for u in leaders] + [daily_key(u, now) for u in leaders])))).scalars())
    queued = 0
    # Each digest is composed outside any write transaction and queued in a short one (issue 18: a report
    # and its charts composed inside the write transaction held SQLite's write lock for seconds).
    for leader in leaders:
        if daily_key(leader, now) not in written and outbox.in_working_hours(leader, now):
            async with runtime.sessions() as session:
                yesterday = reminders.local_today(leader, now) - timedelta(days=1)
                digest = await daily(session, await viewer_for(session, leader), leader.id, yesterday, leader.timezone)
            async with runtime.sessions() as session, session.begin():
                await outbox.enqueue(session, key=daily_key(leader, now), chat_id=leader.telegram_id,
                                     user_id=leader.id, kind=OutboxKind.report,
                                     text=runtime.presenter.daily(digest, leader, runtime.currency), now=now)
        if weekly_key(leader, now) in written or not outbox.in_working_hours(leader, now):
            continue
        today = reminders.local_today(leader, now)
        async with runtime.sessions() as session:
            report = await build(session, await viewer_for(session, leader), kind="week", today=today,
                                 language=leader.language, timezone=leader.timezone)
        folder = runtime.files_dir / f"{leader.id}-{today.isoformat()}"
        folder.mkdir(parents=True, exist_ok=True)
        key = weekly_key(leader, now)
        chat = leader.team_chat_id or leader.telegram_id  # a bound team group gets it instead
        # The charts are drawn in a worker thread: the bot keeps answering meanwhile.
        text, charts = await asyncio.to_thread(runtime.presenter.weekly, report, leader, runtime.currency)
        async with runtime.sessions() as session, session.begin():
            if not await outbox.enqueue(session, key=key, chat_id=chat, user_id=leader.id,
                                        kind=OutboxKind.report, text=text, now=now):
                continue
            for n, (name, png) in enumerate(charts, 1):
                path = folder / name
                path.write_bytes(png)
                os.utime(path, (now.timestamp(), now.timestamp()))  # its age by the clock jobs read (sandbox ⏩)
                await outbox.enqueue(session, key=f"{key}:chart{n}", chat_id=chat, user_id=leader.id,
                                     kind=OutboxKind.report, photo=str(path), now=now)
            queued += 1
    if queued:
        log.info("weekly manager reports queued: %d", queued)
    _forget_old_charts(runtime.files_dir, now)
    return queued


def _forget_old_charts(folder: Path, now: datetime, keep_days: int = 30) -> None:
    """Chart files wait in `files_dir` until the outbox sends them; a month later they are long sent
    (or given up on), so they go."""
    if not folder.exists():
        return
    limit = now.timestamp() - keep_days * 86400  # files are stamped with the clock's time when written
    for path in folder.glob("*/*.png"):
        with contextlib.suppress(OSError):
            if path.stat().st_mtime < limit:
                path.unlink()
                if not any(path.parent.iterdir()):
                    path.parent.rmdir()


async def score_rfm(runtime: Runtime) -> int:
    """Hourly: once the company's day has turned, refresh every customer's RFM scores (services.rfm) for
    the window ending yesterday; otherwise nothing (0)."""
    from services.rfm import score_all

    async with runtime.sessions() as session:  # a short transaction per batch (services.rfm.score_all)
        return await score_all(session, runtime.now().astimezone(ZoneInfo(runtime.timezone)).date(), again=False,
                               batch=2000, commit_each=True)


async def prepare_reports(runtime: Runtime) -> int:
    """Hourly, after the RFM scoring: rule "the day's reports are prepared" — each active manager's and
    admin's /report for each standard period (week, month, quarter, year; the 365-day RFM window) as asked
    on their current local day, for their scope, in their language and time zone, built once (at most once
    per person, period and day; services.reports.prepared serves it while nothing it reads has changed and
    builds it again on the first request after a change). Admins' reports come first: the whole company's,
    which the managers' teams' reports are then narrowed from (services.reports._narrowed) instead of each
    read from the rows. Returns how many reports were made."""
    from services.access import viewer_for
    from services.reports import PERIODS, is_prepared, prepared

    async with runtime.sessions() as session:
        leaders = list((await session.execute(select(User).where(
            User.active.is_(True), User.role.in_(["manager", "admin"]))
            .order_by(case((User.role == "admin", 0), else_=1), User.id))).scalars())
    built = 0
    for leader in leaders:
        for kind in PERIODS:
            async with runtime.sessions() as session:
                viewer = await viewer_for(session, leader)
                options = dict(kind=kind, today=reminders.local_today(leader, runtime.now()),
                               language=leader.language, timezone=leader.timezone)
                if await is_prepared(session, viewer, **options):
                    continue
                await prepared(session, viewer, **options)
                built += 1
    if built:
        log.info("reports prepared: %d", built)
    return built


async def forget_handled_updates(runtime: Runtime) -> int:
    """Daily: drop the ids of Telegram updates handled more than services.updates.KEEP ago."""
    from services.updates import forget_old

    async with runtime.sessions() as session, session.begin():
        return await forget_old(session, runtime.now())


async def drain(runtime: Runtime) -> int:
    if runtime.sender is None:
        return 0
    return await runtime.sender.drain(max_seconds=50)
