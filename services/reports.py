"""Managers' reports: the analyses of services.analytics over the data a viewer may see, for a period.

Rules:
- Scope: a manager's report covers the customers owned by their team (services.access), an admin's every
  customer; archived customers are left out; voided purchases never count.
- Periods end with the last full local day: week = the last 7 days, month = 30, quarter = 91, year = 365.
  Sales analyses compare the period with the same days a year earlier. RFM is services.rfm's one
  definition as of the period's end: the whole company's buyers ranked together (a team's report shows its
  customers' company-wide scores, the same as on their cards), over the 365-day window unless the manager
  chooses 90, 180 or 730 days (that re-scores, and the report says so); segment movement compares with
  the RFM at the end of the previous period.
- The report is plain data (no language); the bot and the spreadsheet writer render it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import io
import pickle
import zlib
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from time import perf_counter
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
from sqlalchemy import BigInteger, Integer, cast, delete, func, or_, select, text, true
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models import (
    ContactStrategy,
    Customer,
    DictionaryEntry,
    Feedback,
    Interaction,
    Purchase,
    ReminderKind,
    ReminderStatus,
    ReportChange,
    ReportContactChange,
    ReportSnapshot,
    User,
    as_utc,
    utcnow,
)
from services import analytics, rfm
from services.access import Viewer
from services.analytics import Contacts, CustomerTable, FeedbackInfo, Period, Sums, distinct_codes
from services.messages import N_, DomainError
from services.rfm import RFM_DAYS
from services.sql import collector_paused, columns

PERIODS = {"week": 7, "month": 30, "quarter": 91, "year": 365}
RFM_WINDOWS = (90, 180, 365, 730)  # the windows a manager can choose for RFM
LONG_WINDOW_DAYS = 180
ANALYSES = ("rfm", "churn", "key_accounts", "distribution", "performance", "complaints", "activity",
            "satisfaction")


@dataclass(frozen=True)
class PeriodMonth:
    """One calendar month of a report's period, cut to the period: `part` is the days inside it."""

    month: str  # YYYY-MM
    part: Period
    amount_cents: int
    year_before_cents: int  # the same days a year earlier (Period.year_before)

    @property
    def partial(self) -> bool:
        whole_start = self.part.start.day == 1
        whole_end = (self.part.end + timedelta(days=1)).day == 1
        return not (whole_start and whole_end)


@dataclass
class Report:
    period: Period
    kind: str
    customers: CustomerTable  # a mapping id → analytics.CustomerInfo
    reps: dict[int, str]
    rfm: analytics.RfmReport
    rfm_window: Period
    churn: list[analytics.ChurnRisk]
    key_accounts: analytics.LazyRows  # of analytics.KeyAccount
    total_cents: int
    distribution: dict[str, list[analytics.Share]]
    performance: analytics.PerformanceReport
    rep_performance: analytics.PerformanceReport
    complaints: analytics.ComplaintReport
    activity: analytics.ActivityReport
    satisfaction: analytics.SatisfactionReport
    trend: list[tuple[str, int, int]] = field(default_factory=list)  # month, amount, amount a year earlier
    months: list[PeriodMonth] = field(default_factory=list)  # the period month by month (the workbook)

    def name(self, customer_id: int | None) -> str:
        info = self.customers.get(customer_id) if customer_id is not None else None
        return info.name if info else "—"

    def rep(self, user_id: int | None) -> str:
        return self.reps.get(user_id, "—") if user_id is not None else "—"

    def code(self, customer_id: int | None) -> str:
        info = self.customers.get(customer_id) if customer_id is not None else None
        return (info.code or "") if info else ""


def period_for(kind: str, today: date) -> Period:
    """The period of that kind ending yesterday (the last full day)."""
    if kind not in PERIODS:
        raise DomainError(N_("the period must be week, month, quarter or year"))
    end = today - timedelta(days=1)
    return Period(end - timedelta(days=PERIODS[kind] - 1), end)


def _scope(query, viewer: Viewer):
    query = query.where(Customer.archived_at.is_(None))
    if viewer.owners is not None:
        query = query.where(Customer.owner_id.in_(viewer.owners))
    return query


def _utc_bounds(period: Period, zone: ZoneInfo) -> tuple[datetime, datetime]:
    start = datetime.combine(period.start, time(), zone).astimezone(UTC)
    end = datetime.combine(period.end + timedelta(days=1), time(), zone).astimezone(UTC)
    return start, end


def _purchase_scope(viewer: Viewer):
    """Which purchases count for the viewer, without joining every purchase to its customer: the team's
    (not archived) customers as an IN list the database builds once; for everyone, all but the archived."""
    if viewer.owners is None:
        archived = select(Customer.id).where(Customer.archived_at.is_not(None))
        return Purchase.customer_id.not_in(archived)
    return Purchase.customer_id.in_(select(Customer.id).where(Customer.owner_id.in_(viewer.owners),
                                                              Customer.archived_at.is_(None)))


async def purchase_scope(session: AsyncSession, viewer: Viewer):
    """The purchase scope, worked out once per report: for everyone, the (usually few) archived customers
    are listed once instead of looked up again in every query."""
    return await customer_scope(session, viewer, Purchase.customer_id)


async def customer_scope(session: AsyncSession, viewer: Viewer, customer_id: Any):
    """Which rows (purchases, interactions) count for the viewer, by their customer id column, without
    joining every row to its customer: the team's (not archived) customers as an IN list the database
    builds once; for everyone, all but the (usually few) archived ones, listed once."""
    if viewer.owners is not None:
        return customer_id.in_(select(Customer.id).where(Customer.owner_id.in_(viewer.owners),
                                                         Customer.archived_at.is_(None)))
    archived = list((await session.execute(select(Customer.id).where(Customer.archived_at.is_not(None))
                                            .limit(5001))).scalars())
    if not archived:
        return true()
    if len(archived) <= 5000:
        return customer_id.not_in(archived)
    return customer_id.not_in(select(Customer.id).where(Customer.archived_at.is_not(None)))


def _day_number(session: AsyncSession, day: Any) -> Any:
    """The day of a date or timestamp (or the text of one) as date.toordinal(), worked out by the database:
    numbers are read as columns (services.sql.columns), never a date object per row."""
    if session.get_bind().dialect.name == "sqlite":
        return cast(func.julianday(day) - 1721424.5, Integer)  # julianday('0001-01-01') = 1721425.5
    return cast(func.to_char(day, "J"), Integer) - 1721425  # Julian day number of 0001-01-01: 1721426


async def _aggregates(session: AsyncSession, viewer: Viewer, period: Period, scope=None) -> Sums:
    """Per-customer sums for one window: a plain GROUP BY over a covering index, read as columns."""
    if period.start > period.end:
        return Sums.empty()
    # A long window holds most purchases: reading the per-customer index in customer order (the day
    # wrapped so the date index is not chosen) beats sorting a date range for the GROUP BY.
    day = func.coalesce(Purchase.purchased_on, Purchase.purchased_on) if period.days >= LONG_WINDOW_DAYS \
        else Purchase.purchased_on
    query = select(Purchase.customer_id, _day_number(session, func.max(Purchase.purchased_on)), func.count(),
                   func.sum(Purchase.amount_cents)).where(
        Purchase.voided_at.is_(None), day.between(period.start, period.end),
        _purchase_scope(viewer) if scope is None else scope).group_by(Purchase.customer_id)
    return Sums.of(*await columns(session, query))


async def window_aggregates(session: AsyncSession, start: date, end: date) -> Sums:
    """Every active customer's sums over one window: the RFM population (services.rfm)."""
    everyone = Viewer.everyone()
    return await _aggregates(session, everyone, Period(start, end), await purchase_scope(session, everyone))


async def _rfm_windows(session: AsyncSession, viewer: Viewer, period: Period, window: Period, previous: Period,
                       customers: CustomerTable) -> tuple[Sums, Sums, Sums, Sums]:
    """The RFM window and the previous one (shifted back by the period) over the whole company (RFM's
    population, services.rfm), then the period and a year before it for the viewer's customers, reading
    the long stretch the two RFM windows share only once, and a window the RFM read already (a year's
    period is the RFM window; the year before it, usually the previous one) not again."""
    year_before = period.year_before()
    everyone = Viewer.everyone()
    scope = await purchase_scope(session, everyone)
    mine = await purchase_scope(session, viewer) if viewer.owners is not None else scope
    read = {}

    def reuse(part: Period) -> Sums | None:
        """A window already read for everyone, kept to the viewer's customers."""
        sums = read.get(part)
        return None if sums is None else sums if viewer.owners is None else sums.within(customers.ids)

    if previous.end < window.start:  # no overlap (a year-long period): read each
        now = read[window] = await _aggregates(session, everyone, window, scope)
        before = read[previous] = await _aggregates(session, everyone, previous, scope)
        in_period = reuse(period)
        if in_period is None:
            in_period = await _aggregates(session, viewer, period, mine)
        last_year = reuse(year_before)
        if last_year is None:
            last_year = await _aggregates(session, viewer, year_before, mine)
        return now, before, in_period, last_year
    shared = await _aggregates(session, everyone, Period(window.start, previous.end), scope)
    head = await _aggregates(session, everyone, Period(previous.start, window.start - timedelta(days=1)), scope)
    tail = read[Period(previous.end + timedelta(days=1), window.end)] = await _aggregates(
        session, everyone, Period(previous.end + timedelta(days=1), window.end), scope)
    in_period = reuse(period)
    if in_period is None:
        in_period = await _aggregates(session, viewer, period, mine)
    return (Sums.merge(shared, tail), Sums.merge(head, shared), in_period,
            await _aggregates(session, viewer, year_before, mine))


async def load_customers(session: AsyncSession, viewer: Viewer, language: str) -> CustomerTable:
    """The viewer's customers (not archived) as columns, with the labels of their dictionary entries in
    `language` and their contact strategy's cycle."""
    labels = {e.id: e.label(language) for e in (await session.execute(select(DictionaryEntry))).scalars()}
    cycles = dict((await session.execute(select(ContactStrategy.id, ContactStrategy.cycle_days))).all())
    # The day of the last contact (its date as stored: UTC on SQLite; julianday's fraction is the time of day).
    contact_day = Customer.last_contact_at
    query = _scope(select(Customer.id, Customer.owner_id, Customer.region_id, Customer.scale_id, Customer.nature_id,
                          Customer.industry_id, Customer.contact_strategy_id, _day_number(session, contact_day),
                          Customer.name, Customer.external_id), viewer)
    ids, owner, region, scale, nature, industry, strategy, last_contact, names, codes = await columns(
        session, query, text=(8, 9))
    if ids.size > 1 and not bool(np.all(ids[1:] > ids[:-1])):
        order = np.argsort(ids, kind="stable")
        ids, owner, region, scale, nature, industry, strategy, last_contact = (
            a[order] for a in (ids, owner, region, scale, nature, industry, strategy, last_contact))
        names, codes = [names[i] for i in order.tolist()], [codes[i] for i in order.tolist()]

    def coded(entries: np.ndarray, value: dict) -> tuple[np.ndarray, list]:
        """Each customer's entry id (-1: none) as a code into the list of the distinct values it stands for."""
        distinct, where = distinct_codes(entries)
        index: dict[Any, int] = {}
        code_of = np.fromiter((index.setdefault(value.get(e), len(index)) for e in distinct.tolist()), dtype=np.int64,
                              count=distinct.size)
        return (code_of[where] if distinct.size else where), list(index)
    cycle_codes, cycle_values = coded(strategy, cycles)
    cycle = np.array([-1 if c is None else c for c in cycle_values], dtype=np.int64)[cycle_codes] if ids.size \
        else np.zeros(0, dtype=np.int64)
    dimensions = {name: coded(entries, labels) for name, entries in zip(CustomerTable.DIMENSIONS,
                                                                        (region, scale, nature, industry))}
    return CustomerTable(ids, names, owner, dimensions, cycle, last_contact, codes)


async def load_contacts(session: AsyncSession, viewer: Viewer, period: Period, zone: ZoneInfo) -> Contacts:
    """The interactions with the viewer's customers during the period's local days, each on its local day."""
    start, end = _utc_bounds(period, zone)
    if session.get_bind().dialect.name == "sqlite":  # julianday counts whole milliseconds: exact when rounded
        millis = cast(func.round(func.julianday(Interaction.occurred_at) * 86_400_000), BigInteger) - 210_866_760_000_000
    else:
        millis = cast(func.floor(func.extract("epoch", Interaction.occurred_at) * 1000), BigInteger)
    # A long period holds most interactions: one pass over the table beats looking each row up from the
    # (rep, time) index (the time wrapped so that index is not chosen), as for purchases.
    at = func.coalesce(Interaction.occurred_at, Interaction.occurred_at) if period.days >= LONG_WINDOW_DAYS \
        else Interaction.occurred_at
    customer, user, at = await columns(session, select(Interaction.customer_id, Interaction.user_id, millis).where(
        at >= start, at < end,
        await customer_scope(session, viewer, Interaction.customer_id)))
    return Contacts(customer, user, local_days(at // 1000, zone, start, end))


def local_days(seconds: np.ndarray, zone: ZoneInfo, start: datetime, end: datetime) -> np.ndarray:
    """The local day (date.toordinal()) in `zone` of each instant (Unix seconds) between start and end: the
    zone's UTC offset is found at every hour of the stretch and, where it changes, to the second; each
    instant then gets the offset in force (zones change their offset at most once an hour)."""
    first, last = int(start.timestamp()) - 3600, int(end.timestamp()) + 3600

    def offset(at: int) -> int:
        return int(datetime.fromtimestamp(at, zone).utcoffset().total_seconds())
    changes, offsets = [first], [offset(first)]
    for hour in range(first + 3600, last + 3600, 3600):
        now = offset(hour)
        if now != offsets[-1]:
            low, high = hour - 3600, hour  # offset(low) is the old one, offset(high) the new one
            while high - low > 1:
                middle = (low + high) // 2
                low, high = (middle, high) if offset(middle) == offsets[-1] else (low, middle)
            changes.append(high)
            offsets.append(now)
    in_force = np.asarray(offsets, dtype=np.int64)[np.searchsorted(np.asarray(changes, dtype=np.int64), seconds,
                                                                   side="right") - 1]
    return (seconds + in_force) // 86400 + date(1970, 1, 1).toordinal()


async def build_apart(sessions: async_sessionmaker[AsyncSession], viewer: Viewer, **options) -> Report:
    """`prepared` in a session of its own from `sessions` (bot.background runs it beside the bot's loop)."""
    async with sessions() as session:
        return await prepared(session, viewer, **options)


# ------------------------------------------------------------------------------------------ prepared reports

# The code a report is made by: a prepared report made by other code (an update) is never served.
_CODE = hashlib.sha256(b"".join(Path(module).read_bytes() for module in (
    __file__, analytics.__file__, rfm.__file__))).hexdigest()[:16]
_TRIGGERS = 22  # report_change_<table>_<insert|update|delete> for 7 tables and _customer_contact (migration 0014)


def snapshot_key(viewer: Viewer, *, kind: str, today: date, language: str, timezone: str, trend_months: int = 12,
                 rfm_days: int = RFM_DAYS) -> str:
    """Which prepared report answers a request: the viewer's scope and every option, and the code."""
    scope = None if viewer.owners is None else sorted(viewer.owners)
    return hashlib.sha256(repr((_CODE, scope, viewer.unassigned, kind, today.isoformat(), language, timezone,
                                trend_months, rfm_days)).encode()).hexdigest()


async def data_version(session: AsyncSession, period: Period, zone: ZoneInfo) -> str | None:
    """How often the data a report of `period` (local days in `zone`) reads has changed (models.report: the
    triggers count purchases per purchase day, interactions per UTC hour and every other change in one
    count; only purchases up to the period's end and interactions before its last local midnight count);
    None when the triggers are not all in place (a migration rebuilt a table and dropped its triggers):
    then nothing can be told and no prepared report is served."""
    if session.get_bind().dialect.name == "sqlite":
        triggers = await session.scalar(text(
            "SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'report_change_%'"))
    else:
        triggers = await session.scalar(text(
            "SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'report_change_%' AND tgenabled <> 'D'"))
    if triggers != _TRIGGERS:
        return None
    other = await session.scalar(select(func.coalesce(func.sum(ReportChange.n), 0)).where(
        ReportChange.part == "other"))
    purchases = await session.scalar(select(func.coalesce(func.sum(ReportChange.n), 0)).where(
        ReportChange.part == "purchase", ReportChange.day <= period.end))
    end = _utc_bounds(period, zone)[1]  # the hours (shard // 8) that begin before it
    hours = end.hour + (1 if (end.minute, end.second, end.microsecond) != (0, 0, 0) else 0)
    contacts = await session.scalar(select(func.coalesce(func.sum(ReportChange.n), 0)).where(
        ReportChange.part == "contact", or_(ReportChange.day < end.date(),
                                            (ReportChange.day == end.date()) & (ReportChange.shard < hours * 8))))
    return f"{int(other)}:{int(purchases)}:{int(contacts)}"


async def prepared(session: AsyncSession, viewer: Viewer, *, kind: str = "week", today: date,
                   language: str = "zh_Hans", timezone: str = "Asia/Shanghai", trend_months: int = 12,
                   rfm_days: int = RFM_DAYS) -> Report:
    """Rule "a prepared report is never stale": the report `build` makes, served from the one prepared for
    the same scope, options and day when nothing it reads has changed since it was built (`data_version`
    read before the build, so a change during the build also counts as a change); otherwise built now and
    kept for the next request (the next tap of the same report, or another manager with the same scope).
    A purchase or contact recorded today does not touch a report whose period ends yesterday (the
    customers' last contacts are read afresh: `_with_current_contacts`); any change to the purchases or
    interactions of its days, to customers' other report columns, feedback, names, dictionaries or contact
    strategies makes it be built again."""
    period = period_for(kind, today)
    if rfm_days not in RFM_WINDOWS:
        raise DomainError(N_("the RFM window must be 90, 180, 365 or 730 days"))
    options = dict(kind=kind, today=today, language=language, timezone=timezone, trend_months=trend_months,
                   rfm_days=rfm_days)
    key = snapshot_key(viewer, **options)
    version = await data_version(session, period, ZoneInfo(timezone))
    if version is not None:
        row = (await session.execute(select(ReportSnapshot.data, ReportSnapshot.made_at).where(
            ReportSnapshot.key == key, ReportSnapshot.version == version))).first()
        if row is not None:
            with collector_paused():
                report = await _with_current_contacts(session, viewer, pickle.loads(zlib.decompress(row.data)),
                                                      as_utc(row.made_at))
            if report is not None:
                return report
    report = await build(session, viewer, **options)
    if version is not None:
        await _keep(session, key, today, version, report)
    return report


def _widened(array: np.ndarray, dtype: str) -> np.ndarray:
    return array.astype(dtype)


class _NarrowPickler(pickle.Pickler):
    """Pickles the report's whole-number columns (int64: ids, days, codes, counts, cents) in the smallest
    integer type that holds their values, widened back to int64 when loaded: at 1M customers the stored
    report shrinks from 201 MB to 70 MB before compression, and reading it back from 3.2 s to 0.9 s."""

    def reducer_override(self, obj: Any) -> Any:
        if type(obj) is np.ndarray and obj.dtype == np.int64 and obj.size > 256:
            low, high = int(obj.min()), int(obj.max())
            for narrow in (np.int8, np.int16, np.int32):
                info = np.iinfo(narrow)
                if info.min <= low and high <= info.max:
                    return _widened, (obj.astype(narrow), "int64")
        return NotImplemented


def _dumps(report: Report) -> bytes:
    out = io.BytesIO()
    _NarrowPickler(out, protocol=5).dump(report)
    return out.getvalue()


CONTACT_LOG_DAYS = 4  # how long report_contact_change keeps a customer (longer than a report is served)
_FEW_CONTACTS = 20_000  # more changed customers than this: their column is read whole instead


async def _with_current_contacts(session: AsyncSession, viewer: Viewer, report: Report,
                                 made_at: datetime) -> Report | None:
    """A prepared report with its customers' last contacts as they are now: the one thing it reads that
    moves on after its period (a contact logged today moves the customer's last contact, which team
    activity reads as of the period's end), read afresh instead of building the report again for every
    contact of the day — for the customers whose last contact changed since the day before it was made
    (report_contact_change, kept by a trigger; the day before covers a change committed while it was being
    built), or, when very many did, for all. None if the customers are not the ones it was made for
    (never expected: any change to them is counted)."""
    table = report.customers
    changed = list((await session.execute(select(ReportContactChange.customer_id).where(
        ReportContactChange.changed_on >= made_at.date() - timedelta(days=1)))).scalars())
    if not changed:
        return report
    if len(changed) > _FEW_CONTACTS:
        ids, last = await columns(session, _scope(select(Customer.id, _day_number(session, Customer.last_contact_at)),
                                                  viewer))
        if ids.size > 1 and not bool(np.all(ids[1:] > ids[:-1])):
            order = np.argsort(ids, kind="stable")
            ids, last = ids[order], last[order]
        if not np.array_equal(ids, table.ids):
            return None
    else:
        wanted = np.unique(np.asarray(changed, dtype=np.int64))
        where = np.searchsorted(table.ids, wanted)
        present = where < table.ids.size
        present[present] = table.ids[where[present]] == wanted[present]
        wanted, where = wanted[present], where[present]
        last = table.last_contact.copy()
        for start in range(0, wanted.size, 500):
            chunk = wanted[start:start + 500]
            found, days = await columns(session, select(Customer.id, _day_number(session, Customer.last_contact_at))
                                        .where(Customer.id.in_(chunk.tolist()), Customer.archived_at.is_(None)))
            if found.size != chunk.size:
                return None
            last[where[start:start + 500]] = days[np.argsort(found)]
    if not np.array_equal(last, table.last_contact):
        table.last_contact = last
        report.activity = dataclasses.replace(report.activity,
                                              within_cycle=analytics.within_cycle(table, report.period.end))
    return report


async def _keep(session: AsyncSession, key: str, today: date, version: str, report: Report) -> tuple[int, float]:
    """Store a report as prepared (one row per key, replaced), in a short transaction of its own; the
    reports of days before yesterday go. Returns the stored size and how long the write took (seconds)."""
    data = await asyncio.to_thread(lambda: zlib.compress(_dumps(report), 1))
    await session.commit()  # the reads' transaction ends before the write
    started = perf_counter()
    values = dict(key=key, made_for=today, version=version, made_at=utcnow(), data=data)
    insert = (sqlite_insert if session.get_bind().dialect.name == "sqlite" else postgresql_insert)(ReportSnapshot)
    await session.execute(insert.values(**values).on_conflict_do_update(
        index_elements=[ReportSnapshot.key], set_={k: v for k, v in values.items() if k != "key"}))
    await session.execute(delete(ReportSnapshot).where(ReportSnapshot.made_for < today - timedelta(days=1)))
    await session.execute(delete(ReportContactChange).where(
        ReportContactChange.changed_on < today - timedelta(days=CONTACT_LOG_DAYS)))
    await session.commit()
    return len(data), perf_counter() - started


async def is_prepared(session: AsyncSession, viewer: Viewer, **options) -> bool:
    """Whether a report with these options was prepared for this day (still valid or not)."""
    return await session.scalar(select(func.count()).select_from(ReportSnapshot).where(
        ReportSnapshot.key == snapshot_key(viewer, **options))) > 0


async def build(session: AsyncSession, viewer: Viewer, *, kind: str = "week", today: date,
                language: str = "zh_Hans", timezone: str = "Asia/Shanghai", trend_months: int = 12,
                rfm_days: int = RFM_DAYS) -> Report:
    """Every analysis for the viewer's scope over the period of `kind` ending yesterday, RFM over the
    `rfm_days` days up to its end."""
    if rfm_days not in RFM_WINDOWS:
        raise DomainError(N_("the RFM window must be 90, 180, 365 or 730 days"))
    with collector_paused():
        return await _build(session, viewer, kind=kind, today=today, language=language, timezone=timezone,
                            trend_months=trend_months, rfm_days=rfm_days)


async def _build(session: AsyncSession, viewer: Viewer, *, kind: str, today: date, language: str, timezone: str,
                 trend_months: int, rfm_days: int) -> Report:
    period = period_for(kind, today)
    zone = ZoneInfo(timezone)
    customers = await load_customers(session, viewer, language)
    reps = dict((await session.execute(select(User.id, User.name))).all())

    window = Period(period.end - timedelta(days=rfm_days - 1), period.end)
    previous = Period(window.start - timedelta(days=period.days), window.end - timedelta(days=period.days))
    now_aggs, before_aggs, in_period, year_before = await _rfm_windows(session, viewer, period, window, previous,
                                                                       customers)
    # CPU-heavy analyses run in a worker thread, so the bot's event loop keeps answering others meanwhile.
    rfm = await asyncio.to_thread(analytics.rfm_report, now_aggs, before_aggs, window, previous, within=customers)
    accounts, total = analytics.key_accounts_of(in_period, year_before)
    distribution = {dimension: analytics.distribution_of(customers.ids, *customers.dimensions[dimension], in_period)
                    for dimension in CustomerTable.DIMENSIONS}
    contacts = await load_contacts(session, viewer, period, zone)
    start, end = _utc_bounds(period, zone)
    feedback_rows = (await session.execute(_scope(
        select(Feedback).join(Customer, Customer.id == Feedback.customer_id)
        .where(or_((Feedback.created_at >= start) & (Feedback.created_at < end), Feedback.status == "open")),
        viewer))).scalars()
    feedback = [FeedbackInfo(f.id, f.customer_id, f.kind, f.product, f.rating, f.status,
                             as_utc(f.created_at).astimezone(zone), as_utc(f.resolved_at).astimezone(zone)
                             if f.resolved_at else None, f.user_id) for f in feedback_rows]
    local_period = period  # feedback dates were turned to local time above
    scope = await purchase_scope(session, viewer)
    range_sums: dict[tuple[date, date], int] = {}  # the trend's months and the period's are mostly the same
    return Report(
        period=period, kind=kind, customers=customers, reps=reps, rfm=rfm, rfm_window=window,
        churn=analytics.churn_priority(rfm, before_aggs), key_accounts=accounts, total_cents=total,
        distribution=distribution, performance=analytics.performance_of(in_period, year_before),
        rep_performance=analytics.performance_by(in_period, year_before, customers),
        complaints=analytics.complaints(feedback, customers, local_period),
        activity=analytics.team_activity(contacts, customers, period, period.end),
        satisfaction=analytics.satisfaction(feedback, customers, local_period),
        trend=await monthly_trend(session, viewer, period.end, trend_months, scope, sums=range_sums),
        months=await period_months(session, viewer, period, scope, sums=range_sums),
    )


async def _range_sum(session: AsyncSession, scope, start: date, end: date,
                     sums: dict[tuple[date, date], int] | None = None) -> int:
    """The amount of the purchases in scope from start to end (days, inclusive), over the covering date
    index; remembered in `sums` (one report asks for the same month more than once)."""
    if sums is not None and (start, end) in sums:
        return sums[(start, end)]
    total = int(await session.scalar(select(func.coalesce(func.sum(Purchase.amount_cents), 0)).where(
        Purchase.voided_at.is_(None), Purchase.purchased_on.between(start, end), scope)) or 0)
    if sums is not None:
        sums[(start, end)] = total
    return total


async def period_months(session: AsyncSession, viewer: Viewer, period: Period, scope=None, *,
                        sums: dict[tuple[date, date], int] | None = None) -> list[PeriodMonth]:
    """Rule "monthly sales follow the period": the calendar months the period touches, each cut to the
    days inside the period (so they add up to the period's total), with the same days a year earlier; a
    month only partly inside is marked partial."""
    scope = scope if scope is not None else await purchase_scope(session, viewer)

    async def total(part: Period) -> int:
        return await _range_sum(session, scope, part.start, part.end, sums)

    out = []
    start = period.start
    while start <= period.end:
        next_month = (start.replace(day=28) + timedelta(days=4)).replace(day=1)
        part = Period(start, min(period.end, next_month - timedelta(days=1)))
        out.append(PeriodMonth(start.strftime("%Y-%m"), part, await total(part), await total(part.year_before())))
        start = next_month
    return out


async def monthly_trend(session: AsyncSession, viewer: Viewer, end: date, months: int,
                        scope=None, *, sums: dict[tuple[date, date], int] | None = None) -> list[tuple[str, int, int]]:
    """Sales per calendar month for the `months` months up to `end`, with the same month a year earlier
    (a range sum per month over the covering date index: cheaper than grouping every purchase by month)."""
    first = date(end.year, end.month, 1)
    starts = []
    for _ in range(months):
        starts.append(first)
        first = (first - timedelta(days=1)).replace(day=1)
    starts.reverse()
    scope = scope if scope is not None else await purchase_scope(session, viewer)

    async def month_sum(start: date, cap: date) -> int:
        last = (start.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)
        return await _range_sum(session, scope, start, min(last, cap), sums)
    a_year_back = Period(end, end).year_before().end  # the current month is compared up to the same day
    if viewer.owners is not None:  # a team: one grouped pass (the team's customers are looked up once)
        month = func.strftime("%Y-%m", Purchase.purchased_on) if session.get_bind().dialect.name == "sqlite" \
            else func.to_char(Purchase.purchased_on, "YYYY-MM")
        since = starts[0].replace(year=starts[0].year - 1)
        rows = (await session.execute(select(month, func.sum(Purchase.amount_cents)).where(
            Purchase.voided_at.is_(None), Purchase.purchased_on >= since, Purchase.purchased_on <= end,
            or_(Purchase.purchased_on <= a_year_back, Purchase.purchased_on >= starts[0]), scope)
            .group_by(month))).all()
        sums = {key: int(total) for key, total in rows}
        return [(s.strftime("%Y-%m"), sums.get(s.strftime("%Y-%m"), 0), sums.get(f"{s.year - 1}-{s.month:02d}", 0))
                for s in starts]
    out = []
    for start in starts:
        out.append((start.strftime("%Y-%m"), await month_sum(start, end),
                    await month_sum(start.replace(year=start.year - 1), a_year_back)))
    return out


# --------------------------------------------------------------------------------------------- spreadsheet

def write_xlsx(report: Report, path: Path, headings: dict[str, Any]) -> Path:
    """The managers' workbook (services.workbook: a streaming writer)."""
    from services.workbook import write

    return write(report, path, headings)


@dataclass
class Daily:
    """Yesterday in a manager's team (the daily digest)."""

    day: date
    contacts: int
    orders: int
    amount_cents: int
    new_complaints: list[tuple[str, str | None]]  # customer name, text
    open_escalations: int


async def daily(session: AsyncSession, viewer: Viewer, manager_id: int, day: date, timezone: str) -> Daily:
    """Daily digest rule: the team's contacts and orders of `day` (local), the complaints recorded that
    day, and how many escalations to this manager are still open."""
    from models import Reminder

    start, end = _utc_bounds(Period(day, day), ZoneInfo(timezone))
    contacts = await session.scalar(_scope(select(func.count()).select_from(Interaction)
                                           .join(Customer, Customer.id == Interaction.customer_id)
                                           .where(Interaction.occurred_at >= start, Interaction.occurred_at < end),
                                           viewer))
    orders, amount = (await session.execute(_scope(
        select(func.count(), func.coalesce(func.sum(Purchase.amount_cents), 0)).select_from(Purchase)
        .join(Customer, Customer.id == Purchase.customer_id)
        .where(Purchase.voided_at.is_(None), Purchase.purchased_on == day), viewer))).one()
    complaints_ = (await session.execute(_scope(
        select(Customer.name, Feedback.text).select_from(Feedback).join(Customer, Customer.id == Feedback.customer_id)
        .where(Feedback.kind == "complaint", Feedback.created_at >= start, Feedback.created_at < end)
        .order_by(Feedback.created_at, Feedback.id), viewer))).all()
    escalations = await session.scalar(select(func.count()).select_from(Reminder).where(
        Reminder.user_id == manager_id, Reminder.kind == ReminderKind.escalation, Reminder.status == ReminderStatus.open))
    return Daily(day, contacts or 0, orders or 0, int(amount or 0), [tuple(r) for r in complaints_], escalations or 0)
