"""Scheduled work: scan the data for reminders, write digests and urgent notices to the outbox, drain it.

Each job is a plain coroutine over a `Runtime` (the database and the bot); the scheduler
(jobs.scheduler) calls them with no arguments but ids, so a job can run anywhere, any number of times:
everything it writes is keyed (services.reminders, services.outbox), a second run writes nothing new.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.notify import complaint_notice, escalation_notice, render_agenda
from models import Customer, Feedback, OutboxMessage, Reminder, User, utcnow
from services import outbox, reminders

if TYPE_CHECKING:
    from bot.sender import Sender

log = logging.getLogger("fieldcrm.jobs")


@dataclass
class Runtime:
    sessions: async_sessionmaker[AsyncSession]
    sender: Sender | None = None
    rules: reminders.Rules = field(default_factory=reminders.Rules)
    clock: object = utcnow  # a callable returning the current aware UTC time (the sandbox can move it)

    def now(self) -> datetime:
        return self.clock()


async def scan(runtime: Runtime, now: datetime | None = None) -> int:
    """Create every reminder the rules call for; queue urgent notices for new escalations. Returns new rows."""
    now = now or runtime.now()
    async with runtime.sessions() as session, session.begin():
        due = await reminders.compute_due(session, now, rules=runtime.rules)
        new = await reminders.apply(session, due, now)
        await _queue_escalations(session, new, now)
    log.info("reminder scan: %d due, %d new", len(due), len(new))
    return len(new)


async def _queue_escalations(session: AsyncSession, new_ids: list[int], now: datetime) -> None:
    """Escalation rule: the manager hears of an overdue customer at once — within their working hours."""
    if not new_ids:
        return
    rows = (await session.execute(select(Reminder.id, Reminder.user_id).where(
        Reminder.id.in_(new_ids[-5000:]), Reminder.kind == "escalation"))).all()
    for reminder_id, manager_id in rows:
        manager = await session.get(User, manager_id)
        if manager is None or not outbox.reachable(manager):
            continue
        item = next(i for i in await _items(session, manager, [reminder_id]))
        text, markup = escalation_notice(item, manager, reminders.local_today(manager, now))
        await outbox.enqueue(session, key=f"urgent:escalation:{reminder_id}", chat_id=manager.telegram_id,
                             user_id=manager.id, kind="urgent", text=text,
                             reply_markup=markup.model_dump(exclude_none=True),
                             not_before=outbox.next_working_moment(manager, now), now=now)


async def _items(session: AsyncSession, user: User, ids: list[int]) -> list[reminders.AgendaItem]:
    items = []
    for reminder in (await session.execute(select(Reminder).where(Reminder.id.in_(ids)))).scalars():
        item = reminders.AgendaItem(reminder, await session.get(Customer, reminder.customer_id))
        if reminder.kind == "escalation" and reminder.subject_id:
            item.owner = await session.get(User, reminder.subject_id)
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
    async with runtime.sessions() as session, session.begin():
        for user in waiting:
            items = await reminders.agenda(session, user, now)
            if not items:
                continue
            text, markup = render_agenda(items, len(items), user, reminders.local_today(user, now), digest=True)
            if await outbox.enqueue(session, key=digest_key(user, now), chat_id=user.telegram_id, user_id=user.id,
                                    kind="digest", text=text,
                                    reply_markup=markup.model_dump(exclude_none=True) if markup else None,
                                    now=now):
                queued += 1
    log.info("digests queued: %d", queued)
    return queued


async def drain(runtime: Runtime) -> int:
    if runtime.sender is None:
        return 0
    return await runtime.sender.drain(max_seconds=50)


async def notify_complaint(session: AsyncSession, feedback: Feedback, now: datetime | None = None) -> int:
    """Complaint rule: the direct manager of the customer's owner (else of the rep who recorded it; with no
    manager, the admins) hears of a new complaint at once, inside their working hours. Written in the
    caller's transaction, so the notice exists exactly when the complaint does."""
    now = now or utcnow()
    customer = await session.get(Customer, feedback.customer_id)
    author = await session.get(User, feedback.user_id) if feedback.user_id else None
    start = customer.owner_id or (author.id if author else None)
    managers: list[User] = []
    seen: set[int] = set()
    person = await session.get(User, start) if start else None
    while person is not None and person.manager_id and person.manager_id not in seen:
        seen.add(person.manager_id)
        person = await session.get(User, person.manager_id)
        if person is not None and person.active:
            managers.append(person)
            break  # the direct manager; escalation further up is the manager's call
    if not managers:  # nobody above: the admins hear of it
        managers = list((await session.execute(select(User).where(
            User.role == "admin", User.active.is_(True)))).scalars())
    queued = 0
    for manager in managers:
        if not outbox.reachable(manager) or (author and manager.id == author.id):
            continue
        text, markup = complaint_notice(feedback, customer, author, manager)
        queued += await outbox.enqueue(
            session, key=f"urgent:complaint:{feedback.id}:{manager.id}", chat_id=manager.telegram_id,
            user_id=manager.id, kind="urgent", text=text, reply_markup=markup.model_dump(exclude_none=True),
            not_before=outbox.next_working_moment(manager, now))
    return queued

