"""The outbox: every message to a user is a row first, sent later by one sender (bot.sender).

Rules:
- A message is written in the same transaction as what caused it, under a unique key (recipient +
  reason + subject + period): writing it again — a second worker, a restarted one — changes nothing.
- Working hours: reminders and urgent notices wait until the recipient's working time (their time zone,
  work days, start and end); "today" is the recipient's local date, DST included.
- A user Telegram refuses (bot blocked, chat gone) is marked unreachable; nothing more is queued or sent
  to them until they write to the bot again.
- Rows are claimed for a short lease before sending, so two senders never send the same row; a send
  that failed for a passing reason is retried with exponential backoff, a permanent failure recorded.
- Several senders (issue 16, one per process) share the outbox: `claim` takes a batch at once, with
  `FOR UPDATE SKIP LOCKED` on PostgreSQL (on SQLite its single writer makes the claim atomic), each row for a
  lease. A sender that dies leaves its rows claimed until the lease ends; then they come back to any sender.
- Per-chat order: a chat's messages go out in the order they were queued (among those whose time has come):
  only a chat's oldest pending message that is due may be claimed, so a later message never overtakes an
  earlier one — not one another sender is sending, not one waiting for a retry.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from models import OutboxMessage, OutboxStatus, User, utcnow

MAX_ATTEMPTS = 8
LEASE = timedelta(seconds=60)


def _at(day: date, moment: time, tz: ZoneInfo) -> datetime:
    """The UTC instant of a local wall-clock time; a time skipped by DST moves forward an hour."""
    # fold=0 reads a skipped time with the offset before the change, which lands an hour later.
    return datetime.combine(day, moment, tz).astimezone(ZoneInfo("UTC"))


def works_on(user: User, day: date) -> bool:
    return str(day.isoweekday()) in (user.work_days or "1234567")


def in_working_hours(user: User, now: datetime) -> bool:
    tz = ZoneInfo(user.timezone)
    local = now.astimezone(tz)
    return works_on(user, local.date()) and \
        _at(local.date(), user.work_start, tz) <= now < _at(local.date(), user.work_end, tz)


def next_working_moment(user: User, now: datetime) -> datetime:
    """`now` if it is inside the user's working hours, else the start of their next working time."""
    if in_working_hours(user, now):
        return now
    tz = ZoneInfo(user.timezone)
    day = now.astimezone(tz).date()
    for offset in range(0, 8):
        candidate = day + timedelta(days=offset)
        start = _at(candidate, user.work_start, tz)
        if works_on(user, candidate) and start >= now:
            return start
    return now  # no working day configured: deliver at once rather than never


async def enqueue(session: AsyncSession, *, key: str, chat_id: int, kind: str, text: str | None = None,
                  user_id: int | None = None, reply_markup: dict[str, Any] | None = None,
                  photo: str | None = None, document: str | None = None,
                  not_before: datetime | None = None, now: datetime | None = None) -> bool:
    """Queue a message once per key; True when this call queued it."""
    now = now or utcnow()
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    statement = insert(OutboxMessage).values(
        key=key, chat_id=chat_id, user_id=user_id, kind=kind, text=text, reply_markup=reply_markup, photo=photo,
        document=document, not_before=not_before or now, next_attempt_at=not_before or now, status=OutboxStatus.pending,
        attempts=0, created_at=now).on_conflict_do_nothing().returning(OutboxMessage.id)
    return (await session.execute(statement)).scalar() is not None


def _free(now: datetime):
    return or_(OutboxMessage.claimed_until.is_(None), OutboxMessage.claimed_until < now)


async def claim(session: AsyncSession, now: datetime, *, limit: int, skip_chats: Collection[int] = (),
                lease: timedelta = LEASE) -> list[OutboxMessage]:
    """Rules "several senders" and "per-chat order": claim up to `limit` rows for `lease` (their
    `claimed_until` is `now + lease`, the claim's token for `release`), oldest first, at most one per chat —
    each chat's oldest pending message whose time has come (`not_before`), and only when that message is
    due (`next_attempt_at`) and no live lease holds it. A chat whose oldest message waits for a retry or is
    being sent by another sender gives nothing, so its later messages wait behind it. `skip_chats`: chats
    the caller cannot send to soon (its rate limits).

    PostgreSQL: the heads are read once (a MATERIALIZED CTE) and the rows locked `FOR UPDATE SKIP LOCKED`,
    their status, due time and lease checked again on the locked row version — two senders claiming at the
    same moment get disjoint rows, and a head another sender claimed (or sent) since this statement's
    snapshot is left out. SQLite: the one statement runs under the database's single write lock.
    Commit the session to make the claim visible; the rows come back (expire_on_commit=False) for sending."""
    postgres = session.get_bind().dialect.name == "postgresql"
    pending = OutboxMessage.status == OutboxStatus.pending
    heads = (select(func.min(OutboxMessage.id).label("id"))
             .where(pending, OutboxMessage.not_before <= now)
             .group_by(OutboxMessage.chat_id))
    if postgres:
        heads = heads.cte("heads").prefix_with("MATERIALIZED")
        head_ids = select(heads.c.id)
    else:
        head_ids = heads
    picked = (select(OutboxMessage.id)
              .where(OutboxMessage.id.in_(head_ids), pending, OutboxMessage.next_attempt_at <= now, _free(now))
              .order_by(OutboxMessage.id).limit(limit))
    if skip_chats:
        picked = picked.where(OutboxMessage.chat_id.not_in(list(skip_chats)))
    if postgres:
        picked = picked.with_for_update(skip_locked=True, of=OutboxMessage)
    rows = (await session.scalars(
        update(OutboxMessage).where(OutboxMessage.id.in_(picked.scalar_subquery()))
        .values(claimed_until=now + lease).returning(OutboxMessage)
        .execution_options(synchronize_session=False, populate_existing=True))).all()
    return sorted(rows, key=lambda row: row.id)


async def release(session: AsyncSession, message_ids: Collection[int], until: datetime) -> int:
    """Give back rows claimed (by `claim`, whose lease ends at `until`) and not sent, so any sender may take
    them at once; a row whose lease ran out and that another sender claimed since is left alone."""
    if not message_ids:
        return 0
    result = await session.execute(update(OutboxMessage).where(
        OutboxMessage.id.in_(list(message_ids)), OutboxMessage.status == OutboxStatus.pending,
        OutboxMessage.claimed_until == until).values(claimed_until=None)
        .execution_options(synchronize_session=False))
    return result.rowcount


async def next_attempt(session: AsyncSession, now: datetime) -> datetime | None:
    """When the next pending row that is not due yet comes due (a retry, a message for working hours)."""
    return await session.scalar(select(func.min(OutboxMessage.next_attempt_at)).where(
        OutboxMessage.status == OutboxStatus.pending, OutboxMessage.next_attempt_at > now))


async def mark_sent(session: AsyncSession, message_id: int, telegram_message_id: int | None, now: datetime) -> None:
    await session.execute(update(OutboxMessage).where(OutboxMessage.id == message_id).values(
        status=OutboxStatus.sent, sent_at=now, message_id=telegram_message_id, claimed_until=None,
        attempts=OutboxMessage.attempts + 1).execution_options(synchronize_session=False))


async def retry_later(session: AsyncSession, message_id: int, at: datetime, error: str, *,
                      count_attempt: bool = True) -> bool:
    """Schedule another try (a 429 does not count as an attempt); False once attempts are used up."""
    row = await session.get(OutboxMessage, message_id)
    attempts = row.attempts + (1 if count_attempt else 0)
    if attempts >= MAX_ATTEMPTS:
        await fail(session, message_id, error)
        return False
    row.attempts, row.next_attempt_at, row.claimed_until, row.error = attempts, at, None, error[:500]
    return True


async def fail(session: AsyncSession, message_id: int, error: str) -> None:
    await session.execute(update(OutboxMessage).where(OutboxMessage.id == message_id).values(
        status=OutboxStatus.failed, error=error[:500], claimed_until=None, attempts=OutboxMessage.attempts + 1)
        .execution_options(synchronize_session=False))


async def mark_unreachable(session: AsyncSession, chat_id: int, reason: str, now: datetime) -> None:
    """The chat is gone for good: flag its user and fail everything still queued for it."""
    await session.execute(update(User).where(User.telegram_id == chat_id, User.unreachable_at.is_(None))
                          .values(unreachable_at=now, unreachable_reason=reason[:200])
                          .execution_options(synchronize_session=False))
    await session.execute(update(OutboxMessage).where(
        OutboxMessage.chat_id == chat_id, OutboxMessage.status == OutboxStatus.pending)
        .values(status=OutboxStatus.failed, error=("recipient unreachable: " + reason)[:500], claimed_until=None)
        .execution_options(synchronize_session=False))


def clear_unreachable(user: User) -> None:
    """The user wrote to the bot again: they can be reached."""
    if user.unreachable_at is not None:
        user.unreachable_at, user.unreachable_reason = None, None


def reachable(user: User) -> bool:
    return user.active and user.telegram_id is not None and user.unreachable_at is None

