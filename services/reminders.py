"""Reminders (提醒): what each user should act on, computed from the data, created once, closed by activity.

Rules (each is a function below; "today" is always the recipient's local date in their time zone):
- Contact strategy (联系策略): a customer is *due* when no interaction of any kind was logged within its
  contact cycle — the last contact (or, never contacted, the day the customer was added) is more than
  `cycle_days` days ago. It is *overdue* when more than `cycle_days × overdue_factor` whole local days
  have passed (1.5 by default, per strategy; 7 × 1.5 = 10.5, so on day 11): the owner's reminder becomes
  an overdue one and the owner's manager gets an escalation, dated by the owner's calendar and delivered
  in the manager's working hours.
  Customers marked "definitely not buying" are left alone.
- Purchase strategy (购买策略): a business-decline alert (客户业务下滑提醒) when the last purchase is more
  than the purchase cycle ago. A customer without a strategy but with 4+ purchases is held to their own
  rhythm (median gap between purchase days, see services.rollups): the alert comes after
  max(rhythm × RHYTHM_TOLERANCE, rhythm + RHYTHM_SLACK_DAYS) days, and says it was learned.
- After a purchase: a thank-you follow-up for the owner, from the customer's latest purchase day for
  THANK_YOU_DAYS days, unless someone contacted the customer since that purchase.
- Prospects: "not buying now" when their expected purchase date is PROSPECT_LEAD_DAYS away or closer;
  "quoted, no response" when nobody contacted them for QUOTED_FOLLOWUP_DAYS days.
- Birthdays of contact persons, on the day (29 February birthdays on 28 February in other years).
- A rep's own "next step" date from a logged interaction, to the rep who set it (the owner if that rep
  left), unless the customer was contacted again since.
- Every reminder has a key (recipient + reason + subject + period). A key makes at most one row, ever:
  recomputing (another worker, a restart, the next scan) never duplicates, and a snoozed or finished
  reminder does not come back for the same period. The period is the cycle instance (the day the
  customer fell due), so a new lapse after a new contact is a new reminder.
- Activity closes reminders: an interaction logged after a reminder closes the customer's follow-up
  reminders (all kinds but the purchase alert); a purchase recorded after it closes the purchase alert.
  Archiving the customer or giving it to someone else closes the old owner's reminders.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Date, String, and_, exists, func, literal, literal_column, or_, select, true, type_coerce, update
from sqlalchemy.ext.asyncio import AsyncSession

from models import (
    ContactPerson,
    ContactStrategy,
    Customer,
    Interaction,
    Purchase,
    PurchaseStrategy,
    Reminder,
    ReminderKind,
    ReminderStatus,
    Stage,
    User,
    as_utc,
    utcnow,
)
from services.messages import N_, DomainError
from services.sql import collector_paused, raw_rows

THANK_YOU_DAYS = 3
PROSPECT_LEAD_DAYS = 7
QUOTED_FOLLOWUP_DAYS = 7
RHYTHM_TOLERANCE = 1.5
RHYTHM_SLACK_DAYS = 7
NEXT_STEP_LOOKBACK_DAYS = 60

# Lower is more urgent; a digest lists items in this order.
PRIORITY = {
    ReminderKind.escalation: 0,
    ReminderKind.next_step: 10,
    ReminderKind.contact_overdue: 20,
    ReminderKind.birthday: 30,
    ReminderKind.thank_you: 40,
    ReminderKind.purchase_lapse: 50,
    ReminderKind.not_now: 60,
    ReminderKind.quoted: 70,
    ReminderKind.contact_due: 80,
}
KINDS = tuple(PRIORITY)
# Closed by an interaction logged after the reminder was created.
CLOSED_BY_CONTACT = tuple(k for k in KINDS if k != ReminderKind.purchase_lapse)
SNOOZE_DAYS = (1, 3, 7)


@dataclass(frozen=True)
class Rules:
    thank_you_days: int = THANK_YOU_DAYS
    prospect_lead_days: int = PROSPECT_LEAD_DAYS
    quoted_followup_days: int = QUOTED_FOLLOWUP_DAYS
    rhythm_tolerance: float = RHYTHM_TOLERANCE
    rhythm_slack_days: int = RHYTHM_SLACK_DAYS


@dataclass(slots=True)
class Due:
    """A reminder that the rules say should exist now."""

    user_id: int
    kind: str
    customer_id: int | None
    due_on: date
    period: str
    subject_id: int | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.user_id}:{self.customer_id or 0}:{self.subject_id or 0}:{self.period}"

    @property
    def priority(self) -> int:
        return PRIORITY[self.kind]

    def as_row(self, now: datetime) -> dict[str, Any]:
        return {"key": self.key, "user_id": self.user_id, "customer_id": self.customer_id, "kind": self.kind,
                "subject_id": self.subject_id, "due_on": self.due_on, "priority": self.priority,
                "detail": self.detail, "status": "open", "snoozed_until": None, "created_at": now,
                "closed_at": None}


class Days:
    """Local calendar days of one time zone, counted back from its today: `ago(instant)` is how many local
    days ago a UTC instant fell — a binary search over the UTC instants of local midnights (DST-correct),
    which also works on the raw ISO strings SQLite returns, so a scan over a million rows parses nothing."""

    SPAN = 4000

    def __init__(self, tz: ZoneInfo, today: date) -> None:
        self.tz, self.today = tz, today
        self.midnights = [datetime.combine(today - timedelta(days=i), time(0), tz).astimezone(UTC)
                          for i in range(self.SPAN - 1, -1, -1)]
        self.as_text = [m.replace(tzinfo=None).isoformat(" ", "microseconds") for m in self.midnights]

    def ago(self, instant: datetime | str) -> int:
        if instant.__class__ is str:
            position = bisect_right(self.as_text, instant)
        else:
            if instant.tzinfo is None:
                instant = instant.replace(tzinfo=UTC)
            position = bisect_right(self.midnights, instant)
        if position:
            return self.SPAN - position
        moment = _instant(instant)  # older than SPAN days: count exactly
        return (self.today - moment.astimezone(self.tz).date()).days

    def on_or_after(self, instant: datetime | str, days_ago: int) -> bool:
        """Whether an instant fell on or after the local day `days_ago` days back (one comparison)."""
        if not 0 <= days_ago < self.SPAN:
            return self.ago(instant) <= days_ago
        if instant.__class__ is str:
            return instant >= self.as_text[self.SPAN - 1 - days_ago]
        return _instant(instant) >= self.midnights[self.SPAN - 1 - days_ago]

    def since(self, instant: datetime | str) -> date:
        return self.today - timedelta(days=self.ago(instant))


def _instant(value: datetime | str) -> datetime:
    """A timestamp as read raw (ISO text on SQLite) as an aware UTC datetime."""
    return as_utc(datetime.fromisoformat(value) if isinstance(value, str) else value)


def _raw(column: Any) -> Any:
    """A date or timestamp column as the driver returns it (ISO text on SQLite, a date or datetime on
    PostgreSQL): skips per-row type processing."""
    return type_coerce(column, String)


@dataclass(frozen=True)
class Recipient:
    id: int
    tz: ZoneInfo
    today: date
    manager_id: int | None
    days: Days


def local_date(moment: datetime, tz: ZoneInfo) -> date:
    return moment.astimezone(tz).date()


def local_today(user: User, now: datetime | None = None) -> date:
    return local_date(now or utcnow(), ZoneInfo(user.timezone))


@lru_cache(maxsize=64)
def _calendar(timezone: str, today: date) -> Days:
    """A zone's calendar for a day, kept for the next scans of the same day."""
    return Days(ZoneInfo(timezone), today)


async def _recipients(session: AsyncSession, now: datetime) -> dict[int, Recipient]:
    calendars: dict[str, Days] = {}
    people = {}
    for user_id, timezone, manager_id in await session.execute(
            select(User.id, User.timezone, User.manager_id).where(User.active.is_(True))):
        if timezone not in calendars:
            calendars[timezone] = _calendar(timezone, local_date(now, ZoneInfo(timezone)))
        days = calendars[timezone]
        people[user_id] = Recipient(user_id, days.tz, days.today, manager_id, days)
    return people


@lru_cache(maxsize=16384)
def _parse_day(text: str) -> date:
    return date.fromisoformat(text[:10])


def _as_date(value: Any) -> date:
    """A date column as read raw: ISO text on SQLite (few distinct days, so parsed once each), a date elsewhere."""
    return _parse_day(value) if value.__class__ is str else value


async def compute_due(session: AsyncSession, now: datetime | None = None, *, rules: Rules = Rules(),
                      user_id: int | None = None, ordered: bool = False) -> list[Due]:
    """Every reminder the rules call for at `now` (for one recipient when `user_id` is given); `ordered`
    sorts them by recipient, priority and due date (the scan itself does not need an order)."""
    now = now or utcnow()
    people = await _recipients(session, now)
    if not people:
        return []
    # One recipient: only their customers and their direct reports' (escalations) are read.
    owners = None if user_id is None else [user_id, *(p.id for p in people.values() if p.manager_id == user_id)]
    earliest = min(p.today for p in people.values())
    latest = max(p.today for p in people.values())
    found: list[Due] = []
    with collector_paused():
        found += await _contact_due(session, people, now, owners)
        found += await _purchase_lapse(session, people, latest, rules, owners)
        found += await _thank_you(session, people, earliest, rules, owners)
        found += await _prospects(session, people, now, latest, rules, owners)
        found += await _birthdays(session, people, owners)
        found += await _next_steps(session, people, earliest, latest, owners)
    if user_id is not None:
        found = [d for d in found if d.user_id == user_id]
    if ordered or user_id is not None:
        found.sort(key=lambda d: (d.user_id, d.priority, d.due_on, d.customer_id or 0, d.kind, d.subject_id or 0,
                                  d.period))  # total: new reminders get their ids in this order everywhere
    return found


def _live_owned(owners: list[int] | None) -> Any:
    """Customers that can have reminders: not archived, with an owner (among `owners` when given). Spelled
    exactly as the partial indexes' condition (models.customer) so the database can use them."""
    live = and_(Customer.archived_at.is_(None), Customer.owner_id.is_not(None))
    return live if owners is None else and_(live, Customer.owner_id.in_(owners))


def _in_stage(stage: Stage) -> Any:
    """`stage = '…'` with the stage written into the SQL, as in the partial indexes' conditions (a bound
    parameter would keep the database from proving that the index applies)."""
    return Customer.stage == literal_column(f"'{Stage(stage).value}'")


async def _contact_due(session: AsyncSession, people: dict[int, Recipient], now: datetime,
                       owners: list[int] | None) -> list[Due]:
    """Contact strategy rule: due past the cycle, overdue (and escalated) past cycle × overdue factor."""
    found: list[Due] = []
    strategies = (await session.execute(select(ContactStrategy).where(ContactStrategy.active.is_(True)))).scalars()
    for strategy in strategies:
        # Overdue when more than cycle × factor whole local days have passed: 7 × 1.5 = 10.5, so on day 11.
        cycle, overdue_after = strategy.cycle_days, math.floor(strategy.cycle_days * strategy.overdue_factor)
        # Two ranges of the contact clock index: contacted before the cutoff, and never contacted but added
        # before it. The cutoff leaves a margin for a DST change within the cycle; the exact local-date
        # check is below.
        cutoff = now - timedelta(days=cycle) + timedelta(hours=2)
        common = (Customer.contact_strategy_id == strategy.id, _live_owned(owners),
                  Customer.stage != Stage.definitely_not)
        # Reminders for the same owner's calendar and the same number of days share their dates and detail.
        plans: dict[tuple[Days, int], tuple[str, date, str, dict[str, Any]]] = {}
        for never, query in (
                (False, select(Customer.id, Customer.owner_id, _raw(Customer.last_contact_at))
                 .where(*common, Customer.last_contact_at < cutoff)),
                (True, select(Customer.id, Customer.owner_id, _raw(Customer.created_at))
                 .where(*common, Customer.last_contact_at.is_(None), Customer.created_at < cutoff))):
            for customer_id, owner_id, moment in await raw_rows(session, query):
                owner = people.get(owner_id)
                if owner is None:
                    continue
                calendar = owner.days
                days = calendar.ago(moment)
                if days <= cycle:
                    continue
                plan = plans.get((calendar, days))
                if plan is None:
                    plan = plans[calendar, days] = _contact_plan(owner.today, days, cycle, overdue_after, never=never)
                kind, due_on, period, detail = plan
                found.append(Due(owner_id, kind, customer_id, due_on, period, detail=detail))
                if kind == ReminderKind.contact_overdue and owner.manager_id:
                    manager = people.get(owner.manager_id)
                    if manager is not None:
                        found.append(Due(manager.id, ReminderKind.escalation, customer_id, due_on, period,
                                         subject_id=owner_id, detail=detail))
    return found


def _contact_plan(today: date, days: int, cycle: int, overdue_after: int, *,
                  never: bool) -> tuple[str, date, str, dict[str, Any]]:
    """Kind, due date, period and detail of a contact reminder `days` days after the last contact. (The
    detail dict is shared by the reminders of one plan: it is read, never changed.)"""
    since = today - timedelta(days=days)
    detail = {"since": since.isoformat(), "cycle": cycle, "never": never}
    period = (since + timedelta(days=cycle + 1)).isoformat()
    if days > overdue_after:
        return ReminderKind.contact_overdue, since + timedelta(days=overdue_after + 1), period, detail
    return ReminderKind.contact_due, since + timedelta(days=cycle + 1), period, detail


async def _purchase_lapse(session: AsyncSession, people: dict[int, Recipient], latest: date,
                          rules: Rules, owners: list[int] | None) -> list[Due]:
    """Purchase strategy rule, and the learned-rhythm rule for customers without a strategy."""
    found = []
    strategies = (await raw_rows(session, select(PurchaseStrategy.id, PurchaseStrategy.cycle_days,
                                               PurchaseStrategy.active)))
    cycles = {sid: cycle for sid, cycle, active in strategies if active}
    inactive = [sid for sid, _cycle, active in strategies if not active]
    for strategy_id, cycle in cycles.items():
        # Nobody's today is later than `latest`: the range holds everyone lapsed, the exact check is below.
        rows = await raw_rows(session, select(Customer.id, Customer.owner_id, _raw(Customer.last_txn_on)).where(
            Customer.purchase_strategy_id == strategy_id, _live_owned(owners),
            Customer.last_txn_on < latest - timedelta(days=cycle)))
        plans: dict[date, tuple[date, str, dict[str, Any]]] = {}
        for customer_id, owner_id, last in rows:
            owner = people.get(owner_id)
            last = _as_date(last)
            if owner is not None and (owner.today - last).days > cycle:
                plan = plans.get(last)
                if plan is None:
                    lapsed = last + timedelta(days=cycle + 1)
                    plan = plans[last] = (lapsed, lapsed.isoformat(),
                                          {"since": last.isoformat(), "cycle": cycle, "learned": False})
                found.append(Due(owner.id, ReminderKind.purchase_lapse, customer_id, plan[0], plan[1], detail=plan[2]))
    # No (active) strategy: the customer's own rhythm, when one was learned. The database keeps only the
    # customers past their allowance (days since the last purchase > gap × tolerance and > gap + slack).
    since_last = _days_since(session, latest, Customer.last_txn_on)
    gap = Customer.purchase_gap_days
    no_strategy = [Customer.purchase_strategy_id.is_(None)]
    if inactive:
        no_strategy.append(Customer.purchase_strategy_id.in_(inactive))
    for condition in no_strategy:
        rows = await raw_rows(session, select(
            Customer.id, Customer.owner_id, _raw(Customer.last_txn_on), Customer.purchase_gap_days).where(
            condition, _live_owned(owners), gap.is_not(None),
            Customer.last_txn_on < latest - timedelta(days=rules.rhythm_slack_days),
            since_last > gap * rules.rhythm_tolerance, since_last > gap + rules.rhythm_slack_days))
        for customer_id, owner_id, last, gap_days in rows:
            owner = people.get(owner_id)
            if owner is None:
                continue
            last = _as_date(last)
            allowed = math.ceil(max(gap_days * rules.rhythm_tolerance, gap_days + rules.rhythm_slack_days))
            if (owner.today - last).days > allowed:
                found.append(Due(owner.id, ReminderKind.purchase_lapse, customer_id, last + timedelta(days=allowed + 1),
                                 (last + timedelta(days=allowed + 1)).isoformat(),
                                 detail={"since": last.isoformat(), "cycle": allowed, "learned": True,
                                         "rhythm": round(gap_days)}))
    return found


def _days_since(session: AsyncSession, today: date, column: Any) -> Any:
    """SQL for the whole days from a date column to `today`."""
    if session.get_bind().dialect.name == "postgresql":
        return literal(today, Date) - column
    return func.julianday(today.isoformat()) - func.julianday(column)


async def _thank_you(session: AsyncSession, people: dict[int, Recipient], earliest: date, rules: Rules,
                     owners: list[int] | None) -> list[Due]:
    """Thank-you rule: a follow-up after the customer's latest purchase day, for a few days, until someone
    contacts the customer (an earlier purchase in those days needs no thank-you of its own)."""
    found = []
    # From the purchase clock index, one range per purchase strategy (none, or any).
    strategies = [sid for (sid,) in await raw_rows(session, select(PurchaseStrategy.id))]
    rows = []
    for condition in (Customer.purchase_strategy_id.is_(None), Customer.purchase_strategy_id.in_(strategies)):
        rows += await raw_rows(session, select(
            Customer.id, Customer.owner_id, _raw(Customer.last_contact_at), _raw(Customer.last_txn_on)).where(
            condition, Customer.last_txn_on >= earliest - timedelta(days=rules.thank_you_days), _live_owned(owners)))
    plans: dict[date, tuple[str, dict[str, Any]]] = {}
    for customer_id, owner_id, last_contact, purchased_on in rows:
        owner = people.get(owner_id)
        purchased_on = _as_date(purchased_on)
        if owner is None:
            continue
        days = (owner.today - purchased_on).days
        if not 0 <= days <= rules.thank_you_days:
            continue
        if last_contact is not None and owner.days.on_or_after(last_contact, days):
            continue  # contacted on or after the purchase day
        plan = plans.get(purchased_on)
        if plan is None:
            plan = plans[purchased_on] = (purchased_on.isoformat(), {"purchased_on": purchased_on.isoformat()})
        found.append(Due(owner_id, ReminderKind.thank_you, customer_id, purchased_on, plan[0], detail=plan[1]))
    return found


async def _prospects(session: AsyncSession, people: dict[int, Recipient], now: datetime, latest: date,
                     rules: Rules, owners: list[int] | None) -> list[Due]:
    """Prospect rules: "not now" near the expected purchase date; "quoted" without a reply for N days."""
    found = []
    rows = await raw_rows(session, select(Customer.id, Customer.owner_id, Customer.expected_purchase_on).where(
        _in_stage(Stage.not_now), _live_owned(owners), Customer.expected_purchase_on.is_not(None),
        Customer.expected_purchase_on <= latest + timedelta(days=rules.prospect_lead_days)))
    for customer_id, owner_id, expected in rows:
        owner = people.get(owner_id)
        expected = _as_date(expected)
        if owner is not None and (expected - owner.today).days <= rules.prospect_lead_days:
            found.append(Due(owner.id, ReminderKind.not_now, customer_id, expected - timedelta(days=rules.prospect_lead_days),
                             expected.isoformat(), detail={"expected": expected.isoformat()}))
    wait = rules.quoted_followup_days
    cutoff = now - timedelta(days=wait - 1)
    for condition in (Customer.last_contact_at < cutoff,
                      and_(Customer.last_contact_at.is_(None), Customer.created_at < cutoff)):
        rows = await raw_rows(session, select(
            Customer.id, Customer.owner_id, _raw(Customer.last_contact_at), _raw(Customer.created_at)).where(
            _in_stage(Stage.quoted_no_response), _live_owned(owners), condition))
        for customer_id, owner_id, last_contact, created in rows:
            owner = people.get(owner_id)
            if owner is None:
                continue
            since = owner.days.since(last_contact or created)
            if (owner.today - since).days >= wait:
                found.append(Due(owner.id, ReminderKind.quoted, customer_id, since + timedelta(days=wait),
                                 (since + timedelta(days=wait)).isoformat(), detail={"since": since.isoformat()}))
    return found


def _birthday_today(mmdd: int, today: date) -> bool:
    if mmdd == today.month * 100 + today.day:
        return True
    leap = today.year % 4 == 0 and (today.year % 100 != 0 or today.year % 400 == 0)
    return mmdd == 229 and not leap and (today.month, today.day) == (2, 28)


async def _birthdays(session: AsyncSession, people: dict[int, Recipient], owners: list[int] | None) -> list[Due]:
    """Birthday rule: contact persons' birthdays, on the day (29 Feb on 28 Feb in common years)."""
    days = {p.today.month * 100 + p.today.day for p in people.values()}
    if 228 in days:
        days.add(229)
    found = []
    rows = await raw_rows(session, select(
        Customer.id, Customer.owner_id, ContactPerson.id, ContactPerson.birthday_mmdd)
        .join(ContactPerson, ContactPerson.customer_id == Customer.id)
        .where(ContactPerson.birthday_mmdd.in_(days), ContactPerson.archived_at.is_(None), _live_owned(owners)))
    for customer_id, owner_id, person_id, mmdd in rows:
        owner = people.get(owner_id)
        if owner is not None and _birthday_today(mmdd, owner.today):
            found.append(Due(owner.id, ReminderKind.birthday, customer_id, owner.today, owner.today.isoformat(),
                             subject_id=person_id))
    return found


async def _next_steps(session: AsyncSession, people: dict[int, Recipient], earliest: date, latest: date,
                      owners: list[int] | None) -> list[Due]:
    """Next-step rule: the date a rep set after a contact, unless the customer was contacted since."""
    found = []
    rows = await raw_rows(session, select(
        Interaction.id, Interaction.user_id, Interaction.next_step_on, _raw(Interaction.occurred_at),
        Customer.id, Customer.owner_id, _raw(Customer.last_contact_at))
        .join(Customer, Customer.id == Interaction.customer_id)
        .where(Interaction.next_step_on.is_not(None),
               Interaction.next_step_on >= earliest - timedelta(days=NEXT_STEP_LOOKBACK_DAYS),
               Interaction.next_step_on <= latest, Customer.archived_at.is_(None),
               true() if owners is None else or_(Interaction.user_id.in_(owners), Customer.owner_id.in_(owners))))
    for interaction_id, author_id, next_on, occurred, customer_id, owner_id, last_contact in rows:
        recipient = people.get(author_id) or people.get(owner_id)
        next_on = _as_date(next_on)
        if recipient is None or next_on > recipient.today:
            continue
        if last_contact is not None and last_contact > occurred:
            continue
        found.append(Due(recipient.id, ReminderKind.next_step, customer_id, next_on, next_on.isoformat(),
                         subject_id=interaction_id, detail={"interaction": interaction_id}))
    return found


# --------------------------------------------------------------------------- applying the rules


async def insert_ignore(session: AsyncSession, model: type, rows: list[dict[str, Any]]) -> None:
    """INSERT … ON CONFLICT DO NOTHING (on any unique key), on SQLite and PostgreSQL alike."""
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    # Core, not the ORM's bulk insert (which runs row by row here): one executemany per batch.
    connection = await session.connection()
    statement = insert(model.__table__).on_conflict_do_nothing()
    for start in range(0, len(rows), 5000):
        await connection.execute(statement, rows[start:start + 5000])


async def apply(session: AsyncSession, due: Iterable[Due], now: datetime | None = None, *, sweep: bool = True,
                user_id: int | None = None, open_keys: set[str] | None = None) -> list[int]:
    """Create the reminders that do not exist yet (by key); returns the ids of the new rows.

    Also retires the owner's "due" reminder of a period once the same period is overdue, and (with
    `sweep`) closes the reminders that activity has answered (`close_answered`): everyone's, or only
    `user_id`'s. The scan job sweeps by itself, incrementally (`close_answered_since`)."""
    now = now or utcnow()
    # Most of what is due was already created by an earlier scan and is still open: those keys are read
    # in one go (a small partial index) and skipped; the unique key still guards everything inserted.
    if open_keys is None:
        open_keys = await open_reminder_keys(session, user_id)
    due = [d for d in due if d.key not in open_keys]
    before = await session.scalar(select(func.max(Reminder.id))) or 0
    await insert_ignore(session, Reminder, [d.as_row(now) for d in due])
    new = list((await session.execute(select(Reminder.id).where(Reminder.id > before).order_by(Reminder.id))).scalars())
    overdue = [d for d in due if d.kind == ReminderKind.contact_overdue]
    for start in range(0, len(overdue), 500):
        keys = [f"contact_due:{d.user_id}:{d.customer_id}:0:{d.period}" for d in overdue[start:start + 500]]
        await session.execute(update(Reminder).where(Reminder.key.in_(keys), Reminder.status == ReminderStatus.open)
                              .values(status=ReminderStatus.closed, closed_at=now).execution_options(synchronize_session=False))
    if sweep:
        await close_answered(session, now, user_id=user_id)
    return new


async def open_reminder_keys(session: AsyncSession, user_id: int | None = None) -> set[str]:
    """The keys of the open reminders (everyone's, or one user's): what a scan need not create again."""
    query = select(Reminder.key).where(Reminder.status == literal_column("'open'"))
    if user_id is not None:
        query = query.where(Reminder.user_id == user_id)
    return {key for (key,) in await raw_rows(session, query)}


@dataclass(frozen=True)
class Watermark:
    """The newest interaction and purchase (by id) a sweep has looked at."""

    interaction_id: int
    purchase_id: int


# Ids are handed out at insert and committed in any order (PostgreSQL): the last few are looked at again.
WATERMARK_OVERLAP = 1000


async def close_answered_since(session: AsyncSession, now: datetime, mark: Watermark | None) -> Watermark:
    """The scan's sweep: close what activity answered, looking only at the customers with interactions or
    purchases recorded since the previous sweep (`mark`; everything when there is none, as after a
    restart). Activity logged in the bot closes its customer's reminders at once; this catches what came
    in by other ways (imports). Returns the mark for the next sweep."""
    top, ordered = await sweep_targets(session, mark)
    for start in range(0, len(ordered), SWEEP_BATCH):
        await close_answered(session, now, customer_ids=ordered[start:start + SWEEP_BATCH])
    return top


SWEEP_BATCH = 2000  # customers swept per statement (and per transaction in the scan job)


async def sweep_targets(session: AsyncSession, mark: Watermark | None) -> tuple[Watermark, list[int]]:
    """The next sweep's mark and the customers to look at, in id order: those with interactions or
    purchases recorded since `mark`, or, without one, every customer with an open reminder."""
    top = Watermark(await session.scalar(select(func.coalesce(func.max(Interaction.id), 0))),
                    await session.scalar(select(func.coalesce(func.max(Purchase.id), 0))))
    if mark is None:
        ids = {cid for (cid,) in await raw_rows(session, select(Reminder.customer_id).where(
            Reminder.status == literal_column("'open'"), Reminder.customer_id.is_not(None)).distinct())}
        return top, sorted(ids)
    ids = {cid for (cid,) in await raw_rows(session, select(Interaction.customer_id).where(
        Interaction.id > mark.interaction_id - WATERMARK_OVERLAP).distinct())}
    ids |= {cid for (cid,) in await raw_rows(session, select(Purchase.customer_id).where(
        Purchase.id > mark.purchase_id - WATERMARK_OVERLAP).distinct())}
    return top, sorted(ids)


async def close_answered(session: AsyncSession, now: datetime | None = None, *,
                         customer_ids: Iterable[int] | None = None, user_id: int | None = None) -> None:
    """Activity closes reminders: a later interaction the follow-ups, a later purchase the purchase alert;
    an archived customer, or one given to another owner, the old owner's reminders and the escalation
    about the old owner. All open reminders, or those about `customer_ids`, or those of `user_id`."""
    now = now or utcnow()
    scope = [Reminder.status == ReminderStatus.open, Reminder.customer_id.is_not(None)]
    if user_id is not None:
        scope.append(Reminder.user_id == user_id)
    if customer_ids is not None:
        ids = list(customer_ids)
        if not ids:
            return
        scope.append(Reminder.customer_id.in_(ids))
    contacted = exists().where(Interaction.customer_id == Reminder.customer_id,
                               Interaction.created_at > Reminder.created_at)
    bought = exists().where(Purchase.customer_id == Reminder.customer_id, Purchase.voided_at.is_(None),
                            Purchase.created_at > Reminder.created_at)
    owner_changed = or_(
        and_(Reminder.kind.not_in([ReminderKind.escalation, ReminderKind.next_step]),
             or_(Customer.owner_id.is_(None), Customer.owner_id != Reminder.user_id)),
        # An escalation is about the owner it names (subject_id): answered once the customer has another.
        and_(Reminder.kind == ReminderKind.escalation,
             or_(Customer.owner_id.is_(None), Customer.owner_id != Reminder.subject_id)))
    gone = exists().where(Customer.id == Reminder.customer_id,
                          or_(Customer.archived_at.is_not(None), owner_changed))
    for condition in (and_(Reminder.kind.in_(CLOSED_BY_CONTACT), contacted),
                      and_(Reminder.kind == ReminderKind.purchase_lapse, bought), gone):
        await session.execute(update(Reminder).where(*scope, condition).values(status=ReminderStatus.closed, closed_at=now)
                              .execution_options(synchronize_session=False))


# --------------------------------------------------------------------------- what a user does with them


async def _own(session: AsyncSession, reminder_id: int, user: User) -> Reminder:
    reminder = await session.get(Reminder, reminder_id)
    if reminder is None or reminder.user_id != user.id:
        raise DomainError(N_("that reminder is not yours"))
    if reminder.status != "open":
        raise DomainError(N_("that reminder is already closed"))
    return reminder


async def snooze(session: AsyncSession, reminder_id: int, user: User, days: int,
                 now: datetime | None = None) -> Reminder:
    """Snooze rule: hidden until today + days (the user's local date); then it comes back once."""
    if days not in SNOOZE_DAYS:
        raise DomainError(N_("snooze for 1, 3 or 7 days"))
    reminder = await _own(session, reminder_id, user)
    reminder.snoozed_until = local_today(user, now) + timedelta(days=days)
    return reminder


async def finish(session: AsyncSession, reminder_id: int, user: User, now: datetime | None = None) -> Reminder:
    """Done: the reminder is closed for its period; the next period makes a new one."""
    reminder = await _own(session, reminder_id, user)
    reminder.status, reminder.closed_at = ReminderStatus.done, now or utcnow()
    return reminder


@dataclass
class AgendaItem:
    reminder: Reminder
    customer: Customer | None
    person: ContactPerson | None = None
    interaction: Interaction | None = None
    owner: User | None = None


def importance(item: AgendaItem, today: date) -> float:
    """Rule "what counts first": how late a reminder is (days beyond the contact or purchase cycle, else past
    its due date; plus one) times what the
    customer is worth (its RFM money score, 1–5; a customer not scored yet — a prospect — counts 1). A big
    account a week overdue comes before a small one a month overdue; ties go by kind (escalations, overdue
    contacts … first), then by due date."""
    detail = item.reminder.detail or {}
    cycle = detail.get("cycle")  # the allowance after which the reminder fell due (learned rhythms too)
    if detail.get("since") and cycle:  # contact and purchase clocks: days beyond the cycle
        late = (today - date.fromisoformat(detail["since"])).days - int(cycle)
    else:
        late = (today - item.reminder.due_on).days
    late = max(0, late) + 1
    worth = item.customer.rfm_m if item.customer is not None and item.customer.rfm_m else 1
    return late * worth


async def agenda(session: AsyncSession, user: User, now: datetime | None = None,
                 limit: int | None = None) -> list[AgendaItem]:
    """The user's open reminders shown today (not snoozed past today), in the order of `importance`."""
    today = local_today(user, now)
    query = (select(Reminder, Customer).outerjoin(Customer, Customer.id == Reminder.customer_id)
             .where(Reminder.user_id == user.id, Reminder.status == ReminderStatus.open, Reminder.due_on <= today,
                    or_(Reminder.snoozed_until.is_(None), Reminder.snoozed_until <= today)))
    items = [AgendaItem(r, c) for r, c in (await session.execute(query)).all()]
    items.sort(key=lambda i: (-importance(i, today), i.reminder.priority, i.reminder.due_on, i.reminder.id))
    if limit:
        items = items[:limit]
    for item in items:
        r = item.reminder
        if r.kind == ReminderKind.birthday and r.subject_id:
            item.person = await session.get(ContactPerson, r.subject_id)
        elif r.kind == ReminderKind.next_step and r.subject_id:
            item.interaction = await session.get(Interaction, r.subject_id)
        elif r.kind == ReminderKind.escalation and r.subject_id:
            item.owner = await session.get(User, r.subject_id)
    return items

