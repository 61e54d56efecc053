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
import bisect
import copy
import dataclasses
import functools
import hashlib
import io
import logging
import pickle
import weakref
import zlib
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from time import perf_counter
from typing import Any, NamedTuple
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
    ReportCustomerChange,
    ReportSnapshot,
    User,
    as_utc,
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
class Inputs:
    """What a report is worked out from besides its customers' table, kept with a prepared report (apart
    from it: read only to bring it up to date customer by customer)."""

    entries: tuple[np.ndarray, ...]  # per customer of the table: region, scale, nature, industry, strategy ids
    now: Sums  # the RFM window, the whole company
    before: Sums  # the previous RFM window, the whole company
    in_period: Sums  # the period, the viewer's customers
    year_before: Sums  # the same days a year earlier, the viewer's customers
    contacts: Contacts  # of the period's local days
    feedback: list[FeedbackInfo]  # recorded in the period, and every open one, by id
    purchase_days: dict[date, int] = field(default_factory=dict)  # report_change's purchase counts, read first
    range_sums: dict[tuple[date, date], int] = field(default_factory=dict)  # the sales per month, by day range


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
    inputs: Inputs | None = field(default=None, repr=False, compare=False)  # what it was made from

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
                       customers: CustomerTable, company: tuple[Sums, Sums] | None = None
                       ) -> tuple[Sums, Sums, Sums, Sums]:
    """The RFM window and the previous one (shifted back by the period) over the whole company (RFM's
    population, services.rfm), then the period and a year before it for the viewer's customers, reading
    the long stretch the two RFM windows share only once, and a window the RFM read already (a year's
    period is the RFM window; the year before it, usually the previous one) not again. `company`: the two
    RFM windows' sums, already at hand (`_company_windows`): not read again."""
    year_before = period.year_before()
    everyone = Viewer.everyone()
    scope = await purchase_scope(session, everyone)
    mine = await purchase_scope(session, viewer) if viewer.owners is not None else scope
    read = {}

    def reuse(part: Period) -> Sums | None:
        """A window already read for everyone, kept to the viewer's customers."""
        sums = read.get(part)
        return None if sums is None else sums if viewer.owners is None else sums.within(customers.ids)

    async def with_the_viewers(now: Sums, before: Sums) -> tuple[Sums, Sums, Sums, Sums]:
        """The two RFM windows, and the period and the year before it for the viewer (kept from them when
        they are the same days, read otherwise)."""
        read[window], read[previous] = now, before
        in_period = reuse(period)
        if in_period is None:
            in_period = await _aggregates(session, viewer, period, mine)
        last_year = reuse(year_before)
        if last_year is None:
            last_year = await _aggregates(session, viewer, year_before, mine)
        return now, before, in_period, last_year

    if company is not None:
        return await with_the_viewers(*company)
    if previous.end < window.start:  # no overlap (a year-long period): read each
        return await with_the_viewers(await _aggregates(session, everyone, window, scope),
                                      await _aggregates(session, everyone, previous, scope))
    shared = await _aggregates(session, everyone, Period(window.start, previous.end), scope)
    head = await _aggregates(session, everyone, Period(previous.start, window.start - timedelta(days=1)), scope)
    tail = read[Period(previous.end + timedelta(days=1), window.end)] = await _aggregates(
        session, everyone, Period(previous.end + timedelta(days=1), window.end), scope)
    in_period = reuse(period)
    if in_period is None:
        in_period = await _aggregates(session, viewer, period, mine)
    return (Sums.merge(shared, tail), Sums.merge(head, shared), in_period,
            await _aggregates(session, viewer, year_before, mine))


class CustomerRows(NamedTuple):
    """The customers of a report as read (sorted by id): the entry ids of their dictionaries and contact
    strategy as stored, before they are turned into labels and cycles (CustomerTable)."""

    ids: np.ndarray
    owner: np.ndarray
    region: np.ndarray
    scale: np.ndarray
    nature: np.ndarray
    industry: np.ndarray
    strategy: np.ndarray
    last_contact: np.ndarray
    names: list[str]
    codes: list[str | None]

    def without(self, ids: np.ndarray) -> CustomerRows:
        """All but the customers in `ids` (sorted)."""
        keep = ~analytics._member(self.ids, ids)
        where = np.flatnonzero(keep).tolist()
        return CustomerRows(*(a[keep] for a in self[:8]), [self.names[i] for i in where],
                            [self.codes[i] for i in where])

    def updated(self, changed: np.ndarray, fresh: CustomerRows) -> CustomerRows:
        """These with the rows of the `changed` customers (sorted) replaced by `fresh` (theirs as they are
        now, the viewer's only). When the same customers are here before and after (changed orders or
        fields: the usual case) their rows are put in place, without copying a million names one by one."""
        where = np.searchsorted(self.ids, fresh.ids)
        if self.ids.size and fresh.ids.size == int(analytics._member(changed, self.ids).sum()) and \
                bool(np.all(where < self.ids.size)) and np.array_equal(self.ids[np.minimum(where, self.ids.size - 1)],
                                                                        fresh.ids):
            arrays = []
            for column, new in zip(self[:8], fresh[:8], strict=True):
                column = column.copy()
                column[where] = new
                arrays.append(column)
            names, codes = list(self.names), list(self.codes)
            for i, at in enumerate(where.tolist()):
                names[at], codes[at] = fresh.names[i], fresh.codes[i]
            return CustomerRows(*arrays, names, codes)
        return self.without(changed).merged(fresh)

    def merged(self, other: CustomerRows) -> CustomerRows:
        """These and `other` (no customer in both) in one id order."""
        ids = np.concatenate([self.ids, other.ids])
        order = np.argsort(ids, kind="stable")
        names, codes = self.names + other.names, self.codes + other.codes
        return CustomerRows(*(np.concatenate([a, b])[order] for a, b in zip(self[:8], other[:8], strict=True)),
                            [names[i] for i in order.tolist()], [codes[i] for i in order.tolist()])


async def _customer_rows(session: AsyncSession, viewer: Viewer, only: list[int] | None = None) -> CustomerRows:
    """The viewer's customers (not archived), or of them those in `only`, sorted by id."""
    # The day of the last contact (its date as stored: UTC on SQLite; julianday's fraction is the time of day).
    query = _scope(select(Customer.id, Customer.owner_id, Customer.region_id, Customer.scale_id, Customer.nature_id,
                          Customer.industry_id, Customer.contact_strategy_id,
                          _day_number(session, Customer.last_contact_at), Customer.name, Customer.external_id), viewer)
    if only is not None:
        query = query.where(Customer.id.in_(only))
    ids, owner, region, scale, nature, industry, strategy, last_contact, names, codes = await columns(
        session, query, text=(8, 9))
    if ids.size > 1 and not bool(np.all(ids[1:] > ids[:-1])):
        order = np.argsort(ids, kind="stable")
        ids, owner, region, scale, nature, industry, strategy, last_contact = (
            a[order] for a in (ids, owner, region, scale, nature, industry, strategy, last_contact))
        names, codes = [names[i] for i in order.tolist()], [codes[i] for i in order.tolist()]
    return CustomerRows(ids, owner, region, scale, nature, industry, strategy, last_contact, names, codes)


async def _labels(session: AsyncSession, language: str) -> tuple[dict[int, str], dict[int, int | None]]:
    """The dictionary entries' labels in `language` and the contact strategies' cycles."""
    labels = {e.id: e.label(language) for e in (await session.execute(select(DictionaryEntry))).scalars()}
    cycles = dict((await session.execute(select(ContactStrategy.id, ContactStrategy.cycle_days))).all())
    return labels, cycles


def _customer_table(rows: CustomerRows, labels: dict[int, str], cycles: dict[int, int | None]) -> CustomerTable:
    """The customers' rows with the labels of their dictionary entries and their contact strategy's cycle."""
    def coded(entries: np.ndarray, value: dict) -> tuple[np.ndarray, list]:
        """Each customer's entry id (-1: none) as a code into the list of the distinct values it stands for."""
        distinct, where = distinct_codes(entries)
        index: dict[Any, int] = {}
        code_of = np.fromiter((index.setdefault(value.get(e), len(index)) for e in distinct.tolist()), dtype=np.int64,
                              count=distinct.size)
        return (code_of[where] if distinct.size else where), list(index)
    cycle_codes, cycle_values = coded(rows.strategy, cycles)
    cycle = np.array([-1 if c is None else c for c in cycle_values], dtype=np.int64)[cycle_codes] if rows.ids.size \
        else np.zeros(0, dtype=np.int64)
    dimensions = {name: coded(entries, labels) for name, entries in zip(CustomerTable.DIMENSIONS,
                                                                        (rows.region, rows.scale, rows.nature,
                                                                         rows.industry))}
    return CustomerTable(rows.ids, rows.names, rows.owner, dimensions, cycle, rows.last_contact.copy(), rows.codes)


async def load_customers(session: AsyncSession, viewer: Viewer, language: str) -> CustomerTable:
    """The viewer's customers (not archived) as columns, with the labels of their dictionary entries in
    `language` and their contact strategy's cycle."""
    return _customer_table(await _customer_rows(session, viewer), *await _labels(session, language))


async def load_contacts(session: AsyncSession, viewer: Viewer, period: Period, zone: ZoneInfo,
                        only: list[int] | None = None) -> Contacts:
    """The interactions with the viewer's customers (or with those in `only`, the viewer's) during the
    period's local days, each on its local day."""
    start, end = _utc_bounds(period, zone)
    if session.get_bind().dialect.name == "sqlite":  # julianday counts whole milliseconds: exact when rounded
        millis = cast(func.round(func.julianday(Interaction.occurred_at) * 86_400_000), BigInteger) - 210_866_760_000_000
    else:
        millis = cast(func.floor(func.extract("epoch", Interaction.occurred_at) * 1000), BigInteger)
    # A long period holds most interactions: one pass over the table beats looking each row up from the
    # (rep, time) index (the time wrapped so that index is not chosen), as for purchases.
    at = func.coalesce(Interaction.occurred_at, Interaction.occurred_at) \
        if period.days >= LONG_WINDOW_DAYS and only is None else Interaction.occurred_at
    scope = await customer_scope(session, viewer, Interaction.customer_id) if only is None \
        else Interaction.customer_id.in_(only)
    customer, user, at = await columns(session, select(Interaction.customer_id, Interaction.user_id, millis).where(
        at >= start, at < end, scope))
    return Contacts(customer, user, local_days(at // 1000, zone, start, end))


def local_days(seconds: np.ndarray, zone: ZoneInfo, start: datetime, end: datetime) -> np.ndarray:
    """The local day (date.toordinal()) in `zone` of each instant (Unix seconds) between start and end: the
    zone's UTC offset is found at every hour of the stretch and, where it changes, to the second; each
    instant then gets the offset in force (zones change their offset at most once an hour)."""
    changes, offsets = _offset_changes(zone, int(start.timestamp()) - 3600, int(end.timestamp()) + 3600)
    in_force = offsets[np.searchsorted(changes, seconds, side="right") - 1]
    return (seconds + in_force) // 86400 + date(1970, 1, 1).toordinal()


@functools.lru_cache(maxsize=64)
def _offset_changes(zone: ZoneInfo, first: int, last: int) -> tuple[np.ndarray, np.ndarray]:
    """(when, offset) of each UTC offset `zone` takes between `first` and `last` (Unix seconds) — cached: a
    report asks for the same stretch many times (a year: 8,760 hours looked at, per call)."""
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
    changed, offset_in_force = np.asarray(changes, dtype=np.int64), np.asarray(offsets, dtype=np.int64)
    changed.flags.writeable = offset_in_force.flags.writeable = False  # shared by every caller
    return changed, offset_in_force


async def build_apart(sessions: async_sessionmaker[AsyncSession], viewer: Viewer, **options) -> Report:
    """`prepared` in a session of its own from `sessions` (bot.background runs it beside the bot's loop). In
    the worker process, whose loop runs on after the work returns (`sessions.outlives_work`), a report made
    now is stored after it is returned (`store_later`), while the reply is being sent; elsewhere before."""
    async with sessions() as session:
        return await prepared(session, viewer, store_later=sessions if getattr(sessions, "outlives_work", False)
                              else None, **options)


# ------------------------------------------------------------------------------------------ prepared reports

# The code a report is made by: a prepared report made by other code (an update) is never served.
_CODE = hashlib.sha256(b"".join(Path(module).read_bytes() for module in (
    __file__, analytics.__file__, rfm.__file__))).hexdigest()[:16]
_TRIGGERS = 22  # report_change_<table>_<insert|update|delete> for 7 tables and _customer_contact (migration 0014)
_CUSTOMER_TRIGGERS = 12  # report_customer_change_<table>_<insert|update|delete> for 4 tables (migration 0016)


def snapshot_key(viewer: Viewer, *, kind: str, today: date, language: str, timezone: str, trend_months: int = 12,
                 rfm_days: int = RFM_DAYS) -> str:
    """Which prepared report answers a request: the viewer's scope and every option, and the code."""
    scope = None if viewer.owners is None else sorted(viewer.owners)
    # The code first (`to_hold` reads only this code's reports), then the options' hash: 64 characters.
    return _CODE + hashlib.sha256(repr((_CODE, scope, viewer.unassigned, kind, today.isoformat(), language, timezone,
                                        trend_months, rfm_days)).encode()).hexdigest()[:48]


async def _triggers(session: AsyncSession) -> tuple[int, int]:
    """How many of the count triggers (migration 0014) and of the customer-log triggers (0016) are in place and
    fire for the product's writes (PostgreSQL: enabled for origin sessions — a trigger switched to fire on
    replicas only, or disabled, records nothing)."""
    if session.get_bind().dialect.name == "sqlite":
        names = (await session.execute(text(
            "SELECT name FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'report_%'"))).scalars()
    else:
        names = (await session.execute(text(
            "SELECT tgname FROM pg_trigger WHERE tgname LIKE 'report_%' AND tgenabled IN ('O', 'A')"))).scalars()
    names = list(names)
    return (sum(name.startswith("report_change_") for name in names),
            sum(name.startswith("report_customer_change_") for name in names))


async def data_version(session: AsyncSession, period: Period, zone: ZoneInfo) -> str | None:
    """How often the data a report of `period` (local days in `zone`) reads has changed (models.report: the
    triggers count purchases per purchase day, interactions per UTC hour, customers' report columns and
    feedback in one count and people's names, dictionaries and contact strategies in another; only
    purchases up to the period's end and interactions before its last local midnight count), as
    "other:customer:purchase:contact"; None when the triggers are not all in place (a migration rebuilt a
    table and dropped its triggers): then nothing can be told and no prepared report is served."""
    if (await _triggers(session))[0] != _TRIGGERS:
        return None

    async def count(part: str, *where: Any) -> int:
        return int(await session.scalar(select(func.coalesce(func.sum(ReportChange.n), 0)).where(
            ReportChange.part == part, *where)))
    purchases = await count("purchase", ReportChange.day <= period.end)
    end = _utc_bounds(period, zone)[1]  # the hours (shard // 8) that begin before it
    hours = end.hour + (1 if (end.minute, end.second, end.microsecond) != (0, 0, 0) else 0)
    contacts = await count("contact", or_(ReportChange.day < end.date(),
                                          (ReportChange.day == end.date()) & (ReportChange.shard < hours * 8)))
    return f"{await count('other')}:{await count('customer')}:{purchases}:{contacts}"


async def _one_moment(session: AsyncSession) -> None:
    """From here to the session's next commit, every read sees the database as it was at one moment (the
    first read): the counts, the customers, their sums and the sales per month of one report agree with
    one another whatever is written meanwhile (a customer archived between the read of the customers and
    that of the sales would otherwise be counted in one and not the other). PostgreSQL: a REPEATABLE READ
    transaction; SQLite: a transaction begun at once (the driver begins one only before a write, so each
    read saw the latest data). What the session read or wrote before is committed first: a report's reads
    begin a transaction of their own (it already ended it before storing the report), ended by `prepared`.
    Nothing may be written inside it: on SQLite a write in a read transaction that others wrote since fails
    at once ("database is locked"; the busy timeout does not retry it) — `_keep` commits before it writes."""
    await session.commit()
    if session.get_bind().dialect.name == "sqlite":
        connection = await session.connection()
        raw = await connection.get_raw_connection()
        if not raw.driver_connection.in_transaction:
            await connection.exec_driver_sql("BEGIN")
    else:
        await session.connection(execution_options={"isolation_level": "REPEATABLE READ"})


@dataclass(eq=False)
class _Held:
    """A report this process made (built or brought up to date), with its inputs: the next request for the
    same key starts from it instead of reading the stored copy back (at 1M customers: 1.5–2 s of reading,
    decompressing and unpickling)."""

    report: Report
    version: str
    made_at: datetime  # when its reads began: what it is stored with, and where its customer log starts
    lineage: frozenset  # made_at of every stored report it descends from here (None: it was built)
    stored: bool = False
    size: int = 0  # bytes, about (_held_bytes)


# Per database (its engine; weakly: a test's database goes with its engine): key → the report made for it.
_HELD: weakref.WeakKeyDictionary[Any, OrderedDict[str, _Held]] = weakref.WeakKeyDictionary()
HELD_BYTES = 1_000_000_000  # what the reports held in memory may take at most (the newest is always held)
_STORING: set[asyncio.Task] = set()  # reports being stored after they were returned (`store_later`)


def _held_bytes(report: Report) -> int:
    """About how much memory a held report takes: its arrays (the customers' columns, every analysis's, and
    its inputs' — a team's report holds the whole company's RFM windows) and 100 bytes per item of a list
    or mapping (names, codes, rows; a long one's first 64 items stand for all)."""
    seen: set[int] = set()

    def size(value: Any, depth: int) -> int:
        if depth > 5 or id(value) in seen:
            return 0
        seen.add(id(value))
        if isinstance(value, np.ndarray):
            return value.nbytes
        if isinstance(value, functools.partial):  # analytics.LazyRows: the arrays its rows are made from
            return size(value.args, depth + 1) + size(value.keywords, depth + 1)
        if isinstance(value, (list, tuple, dict)):
            items = list(value.values()) if isinstance(value, dict) else value
            sample = items[:64]
            return 100 * len(items) + sum(size(v, depth + 1) for v in sample) * len(items) // max(1, len(sample))
        fields = getattr(value, "__dict__", None)  # dataclasses, CustomerTable
        return sum(size(v, depth + 1) for v in fields.values()) if fields else 0
    return size(report, 0)


def _held_for(session: AsyncSession) -> OrderedDict[str, _Held]:
    engine = session.get_bind()
    held = _HELD.get(engine)
    if held is None:
        held = _HELD[engine] = OrderedDict()
    return held


def _hold(held: OrderedDict[str, _Held], key: str, entry: _Held) -> None:
    """Keep `entry` as the newest, letting go of the least recently used beyond HELD_BYTES (over every
    database of this process)."""
    entry.size = _held_bytes(entry.report)
    held.pop(key, None)
    held[key] = entry
    every = [(place, k) for place in list(_HELD.values()) for k in place]
    total = sum(place[k].size for place, k in every)
    for place, k in every:  # the least recently used of each database first
        if total <= HELD_BYTES:
            break
        if place is held and k == key:
            continue
        total -= place.pop(k).size


HELD, SKIPPED, NO_ROOM = 1, 0, -1  # what `hold_one` did


async def to_hold(session: AsyncSession, *, since: date | None = None) -> list[tuple[str, str, datetime]]:
    """The stored reports `hold_stored` would hold, newest day and newest made first: (key, version,
    made_at) of those made for `since` (default: yesterday by UTC, so every time zone's today) or later, by
    this code (a report stored by another release is never served: its key differs), with their inputs."""
    since = since or datetime.now(UTC).date() - timedelta(days=1)
    return [tuple(row) for row in (await session.execute(
        select(ReportSnapshot.key, ReportSnapshot.version, ReportSnapshot.made_at)
        .where(ReportSnapshot.made_for >= since, ReportSnapshot.key.startswith(_CODE),
               ReportSnapshot.inputs.is_not(None))
        .order_by(ReportSnapshot.made_for.desc(), ReportSnapshot.made_at.desc()))).all()]


async def hold_one(session: AsyncSession, key: str, version: str, made_at: datetime) -> int:
    """Hold one stored report (`to_hold`) in memory with its inputs, behind every report held already (it
    is let go of first), if HELD_BYTES leaves room: HELD, SKIPPED (held already, or replaced meanwhile) or
    NO_ROOM."""
    held_here = _held_for(session)
    if key in held_here:
        return SKIPPED
    room = HELD_BYTES - sum(entry.size for place in list(_HELD.values()) for entry in place.values())
    if room <= 0:
        return NO_ROOM
    found = (await session.execute(select(ReportSnapshot.data, ReportSnapshot.inputs).where(
        ReportSnapshot.key == key, ReportSnapshot.made_at == made_at, ReportSnapshot.inputs.is_not(None)))).first()
    await session.commit()  # no read snapshot held while it is unpacked
    if found is None:  # replaced meanwhile (by a newer report, which a request will read)
        return SKIPPED
    data, inputs = await asyncio.gather(asyncio.to_thread(zlib.decompress, found.data),
                                        asyncio.to_thread(zlib.decompress, found.inputs))
    with collector_paused():
        report = pickle.loads(data)
        report.inputs = pickle.loads(inputs)
    if key in held_here:  # a request made it meanwhile (a newer one, or the same): that one stays
        return SKIPPED
    entry = _Held(report, version, as_utc(made_at), frozenset(), stored=True, size=_held_bytes(report))
    if entry.size > room:
        return NO_ROOM
    held_here[key] = entry
    held_here.move_to_end(key, last=False)  # what people asked for since the start stays longer
    return HELD


async def hold_stored(session: AsyncSession, *, since: date | None = None) -> int:
    """Rule "a restart costs no report": hold in memory, with their inputs, the prepared reports of the
    day stored by this code (`to_hold`), newest first, as many as HELD_BYTES leaves room for — so the first
    request after a start is served, or brought up to date, as fast as the next one (at 1M customers an
    update from the stored copy took 3–4.2 s, from memory 1.9–2.9 s). Reports already held are left as they
    are. Returns how many it took. (The bot does the same one report per piece of work: `hold_one_work`.)"""
    taken = 0
    for key, version, made_at in await to_hold(session, since=since):
        done = await hold_one(session, key, version, made_at)
        if done == NO_ROOM:
            break
        taken += done == HELD
    await session.commit()
    return taken


async def hold_one_work(key: str, version: str, made_at: datetime, sessions: async_sessionmaker[AsyncSession]) -> int:
    """`hold_one` as work for the worker process that builds the reports (bot.background): one report per
    piece of work, so a request or a job waits for at most one (0.5–0.9 s at 1M customers)."""
    async with sessions() as session:
        return await hold_one(session, key, version, made_at)


def forget_held() -> None:
    """Let go of every report held in memory (tests and the bench: the next request reads the stored copy)."""
    _HELD.clear()


async def stored() -> None:
    """Wait until the reports this loop returned before storing them (`store_later`) are stored."""
    loop = asyncio.get_running_loop()
    while mine := [task for task in _STORING if task.get_loop() is loop and not task.done()]:
        await asyncio.gather(*mine, return_exceptions=True)


def _behind(now: str, kept: str) -> bool:
    """Whether any change count of version `now` is lower than in `kept`: the counts only grow, unless the
    database was restored from a backup — whatever was made from the data before is then not this data."""
    a, b = now.split(":"), kept.split(":")
    return len(a) != len(b) or any(int(x) < int(y) for x, y in zip(a, b, strict=True))


def _updatable(kept: str, now: str) -> bool:
    """Whether a prepared report of version `kept` can be brought up to date to `now`, customer by
    customer: both count the same parts (customers' purchases, contacts, feedback and report columns are
    read again for the customers that changed; people's names, dictionary labels and contact cycles —
    "other" — are read again whole, whatever changed)."""
    return kept.count(":") == now.count(":") == 3


async def prepared(session: AsyncSession, viewer: Viewer, *, kind: str = "week", today: date,
                   language: str = "zh_Hans", timezone: str = "Asia/Shanghai", trend_months: int = 12,
                   rfm_days: int = RFM_DAYS, store_later: async_sessionmaker[AsyncSession] | None = None
                   ) -> Report:
    """Rule "a prepared report is never stale": the report `build` makes, served from the one prepared for
    the same scope, options and day when nothing it reads has changed since it was built (`data_version`
    read before the build, so a change during the build also counts as a change); otherwise built now and
    kept for the next request (the next tap of the same report, or another manager with the same scope).
    A purchase or contact recorded today does not touch a report whose period ends yesterday (the
    customers' last contacts are read afresh: `_with_current_contacts`). When what changed are some
    customers' purchases, contacts, feedback or report columns (a late order, an import, a customer added,
    edited or archived, a complaint recorded), the prepared report is brought up to date for those customers
    (`_brought_up_to_date`: the same figures as a build, reading only their rows; people's names, the
    dictionaries' labels and the contact cycles are read again whole) and kept so; more changed customers
    than `_FEW_CUSTOMERS` make it be built again. The day's first request (or the prepare job's) starts
    from yesterday's report for the same scope and options, moved on by a day (`_carried_forward`) rather
    than built; a team's or one rep's report, while the whole company's of the same data is held, is
    narrowed from that one (`_narrowed`).

    A report this process made is held in memory (`_Held`, up to HELD_CUSTOMERS customers): the next
    request starts from it rather than from the stored copy, as long as the stored copy is that report or
    one it descends from (otherwise another process stored a newer one, or the data was restored: the
    stored copy is read). With `store_later` (a sessionmaker: the bot's requests, `build_apart`) a report
    made now is stored after it is returned, in a session of its own, while the reply is being sent;
    without it (the prepare job) before.

    The session must be one of its own (as `build_apart` and the prepare job give it): what it read or wrote
    before is committed first, its reads then see one moment (`_one_moment`), and it is committed again
    before this returns — never the bot's transaction of an update."""
    period = period_for(kind, today)
    if rfm_days not in RFM_WINDOWS:
        raise DomainError(N_("the RFM window must be 90, 180, 365 or 730 days"))
    options = dict(kind=kind, today=today, language=language, timezone=timezone, trend_months=trend_months,
                   rfm_days=rfm_days)
    key = snapshot_key(viewer, **options)
    held_here = _held_for(session)
    await _one_moment(session)
    try:
        # Before the first read: a change committed after it is in the customer logs, whose days the
        # database's clock gives — the real time, not the sandbox's (models.CLOCK, moved ahead by ⏩).
        made_at = datetime.now(UTC)
        version = await data_version(session, period, ZoneInfo(timezone))
        if version is not None:
            row = (await session.execute(select(ReportSnapshot.made_at, ReportSnapshot.version)
                                         .where(ReportSnapshot.key == key))).first()
            row_made = as_utc(row.made_at) if row is not None else None
            held = held_here.get(key)
            if held is not None and (row_made != held.made_at and (held.stored or row_made not in held.lineage)
                                     or _behind(version, held.version)):
                # another process stored a newer one (that one counts), or the data was restored from a backup
                # (the stored reports are not those made here, or the change counts went back)
                held_here.pop(key, None)
                held = None
            if held is not None:
                held_here.move_to_end(key)
                kept_version, kept_made = held.version, held.made_at
            elif row is not None:
                kept_version, kept_made = row.version, row_made
            if (held is not None or row is not None) and not _behind(version, kept_version):
                this = (ReportSnapshot.key == key, ReportSnapshot.version == kept_version,
                        ReportSnapshot.made_at == row.made_at) if row is not None else ()
                if kept_version == version:
                    with collector_paused():
                        if held is None:  # held from now on (without its inputs: read if it must be updated)
                            held = _Held(pickle.loads(zlib.decompress(await session.scalar(
                                select(ReportSnapshot.data).where(*this)))), kept_version, kept_made, frozenset(),
                                stored=True)
                            _hold(held_here, key, held)
                        report = await _with_current_contacts(session, viewer, held.report, kept_made)
                    if report is not None:
                        held.report = report
                        return report
                    held_here.pop(key, None)
                elif _updatable(kept_version, version) and (await _triggers(session))[1] == _CUSTOMER_TRIGGERS:
                    if held is not None and held.report.inputs is None and row is not None:
                        # the stored one, held as it was served without its inputs: they are read now
                        inputs = await session.scalar(select(ReportSnapshot.inputs).where(*this))
                        if inputs is not None:
                            inputs = await asyncio.to_thread(zlib.decompress, inputs)
                            with collector_paused():
                                inputs = pickle.loads(inputs)
                        report = held.report
                    elif held is not None:
                        report, inputs = held.report, held.report.inputs
                    else:
                        data, inputs = (await session.execute(select(ReportSnapshot.data, ReportSnapshot.inputs)
                                                              .where(*this))).one()
                        if inputs is not None:
                            data, inputs = await asyncio.gather(asyncio.to_thread(zlib.decompress, data),
                                                                asyncio.to_thread(zlib.decompress, inputs))
                            with collector_paused():
                                report, inputs = pickle.loads(data), pickle.loads(inputs)
                    if inputs is not None:
                        with collector_paused():
                            report = await _brought_up_to_date(session, viewer, report, inputs, kept_made, **options)
                        if report is not None:
                            lineage = (held.lineage | {held.made_at}) if held is not None else frozenset({row_made})
                            await _kept(session, held_here, key, today, version, report, made_at, lineage,
                                        store_later)
                            return report
        if version is not None:  # a team's, or another language's or zone's: the company's of the same data, narrowed
            with collector_paused():
                report = await _narrowed(session, viewer, held_here, key, version, options)
            if report is not None:
                await _kept(session, held_here, key, today, version, report, made_at,
                            frozenset({row_made}) if row is not None else frozenset({None}), store_later)
                return report
        if version is not None and held is None and row is None:  # nothing yet for today: yesterday's, moved on
            report = await _carried_forward(session, viewer, held_here, version, options)
            if report is not None:
                await _kept(session, held_here, key, today, version, report, made_at, frozenset({None}), store_later)
                return report
        company = await _company_windows(session, held_here, version, period, rfm_days) \
            if version is not None else None
        report = await build(session, viewer, company=company, **options)
        if version is not None:
            await _kept(session, held_here, key, today, version, report, made_at,
                        frozenset({row_made}) if row is not None else frozenset({None}), store_later)
        return report
    except BaseException:
        if session.in_transaction():
            await session.rollback()
        raise
    finally:
        if session.in_transaction():  # the reads' snapshot ends here, whichever way the report came
            await session.commit()


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


def _dumps(report: Any) -> bytes:
    out = io.BytesIO()
    _NarrowPickler(out, protocol=5).dump(report)
    return out.getvalue()


CONTACT_LOG_DAYS = 4  # how long the customer logs keep a customer (longer than a report is served)
_FEW_CONTACTS = 20_000  # more changed customers than this: their column is read whole instead
# More changed customers than this: the report is built again. At 1M customers an update after 50,000 took
# 7.2 s against a build's 12.5 s in the same run (20,000: 4.8 against 16.5 s); the day's first report, moved
# on from yesterday's, reads the customers of two or three days' orders again (`_changed_since`).
_FEW_CUSTOMERS = 50_000
_CHUNK = 500  # customers per IN list


def _logged_since(made_at: datetime) -> bool:
    """Whether the customer logs still hold every change since the day before `made_at` (`_keep` lets go of
    their days older than CONTACT_LOG_DAYS): a report made longer ago (the sandbox's clock set back to its
    start over the same database, a stored report of a day long past) cannot be told what changed since."""
    return made_at.date() - timedelta(days=1) >= datetime.now(UTC).date() - timedelta(days=CONTACT_LOG_DAYS)


def _chunks(ids: np.ndarray) -> Iterator[list[int]]:
    for start in range(0, ids.size, _CHUNK):
        yield ids[start:start + _CHUNK].tolist()


async def _current_last_contacts(session: AsyncSession, viewer: Viewer, ids: np.ndarray, last: np.ndarray,
                                 made_at: datetime) -> np.ndarray | None:
    """The last contacts of the customers `ids` (sorted; `last` as they were when the report was made) as
    they are now: read afresh for the customers whose last contact changed since the day before it was made
    (report_contact_change, kept by a trigger; the day before covers a change committed while it was being
    built), or, when very many did or the log no longer reaches back that far (`_logged_since`), for all.
    None if the customers are not these (never expected: any change to them is counted)."""
    logged = _logged_since(made_at)
    changed = list((await session.execute(select(ReportContactChange.customer_id).where(
        ReportContactChange.changed_on >= made_at.date() - timedelta(days=1)))).scalars()) if logged else []
    if logged and not changed:
        return last
    if not logged or len(changed) > _FEW_CONTACTS:
        now_ids, now_last = await columns(session, _scope(select(Customer.id, _day_number(
            session, Customer.last_contact_at)), viewer))
        if now_ids.size > 1 and not bool(np.all(now_ids[1:] > now_ids[:-1])):
            order = np.argsort(now_ids, kind="stable")
            now_ids, now_last = now_ids[order], now_last[order]
        return now_last if np.array_equal(now_ids, ids) else None
    wanted = np.unique(np.asarray(changed, dtype=np.int64))
    where = np.searchsorted(ids, wanted)
    present = where < ids.size
    present[present] = ids[where[present]] == wanted[present]
    wanted, where = wanted[present], where[present]
    last = last.copy()
    for start in range(0, wanted.size, _CHUNK):
        chunk = wanted[start:start + _CHUNK]
        found, days = await columns(session, select(Customer.id, _day_number(session, Customer.last_contact_at))
                                    .where(Customer.id.in_(chunk.tolist()), Customer.archived_at.is_(None)))
        if found.size != chunk.size:
            return None
        last[where[start:start + _CHUNK]] = days[np.argsort(found)]
    return last


async def _with_current_contacts(session: AsyncSession, viewer: Viewer, report: Report,
                                 made_at: datetime) -> Report | None:
    """A prepared report with its customers' last contacts as they are now: the one thing it reads that
    moves on after its period (a contact logged today moves the customer's last contact, which team
    activity reads as of the period's end), read afresh instead of building the report again for every
    contact of the day (`_current_last_contacts`). None if the customers are not the ones it was made for."""
    table = report.customers
    last = await _current_last_contacts(session, viewer, table.ids, table.last_contact, made_at)
    if last is None:
        return None
    if not np.array_equal(last, table.last_contact):
        # a new report, the one given left as it is: it may be held, and being stored in another thread
        table = copy.copy(table)
        table.last_contact = last
        report = dataclasses.replace(report, customers=table, activity=dataclasses.replace(
            report.activity, within_cycle=analytics.within_cycle(table, report.period.end)))
    return report


async def _kept(session: AsyncSession, held_here: OrderedDict[str, _Held], key: str, today: date, version: str,
                report: Report, made_at: datetime, lineage: frozenset,
                store_later: async_sessionmaker[AsyncSession] | None) -> None:
    """Hold the report made now in memory, and store it: now, or after it is returned (`store_later`)."""
    entry = _Held(report, version, made_at, lineage)
    _hold(held_here, key, entry)
    if store_later is None:
        await _keep(session, key, today, version, report, made_at)
        entry.stored = True
        return
    await session.commit()  # the reads' snapshot ends before the report is returned

    async def store() -> None:
        try:
            async with store_later() as apart:
                await _keep(apart, key, today, version, report, made_at)
            entry.stored = True
        except Exception:  # kept in memory all the same; the next request made here starts from it
            logging.getLogger("fieldcrm.reports").warning("a prepared report could not be stored", exc_info=True)
    task = asyncio.get_running_loop().create_task(store())
    _STORING.add(task)
    task.add_done_callback(_STORING.discard)


async def _keep(session: AsyncSession, key: str, today: date, version: str, report: Report,
                made_at: datetime | None = None) -> tuple[int, float]:
    """Store a report as prepared (one row per key, replaced) with what it was made from (`Inputs`, read
    only to bring it up to date), in a short transaction of its own; the reports of days before yesterday
    go. `made_at`: when its reads began (now if not given). Returns the stored size and how long the
    write took (seconds)."""
    def pickled() -> tuple[bytes, bytes | None]:
        # (a copy without them: the report itself may be held and in use meanwhile, `store_later`)
        return _dumps(dataclasses.replace(report, inputs=None)), None if report.inputs is None else \
            _dumps(report.inputs)
    data, inputs = await asyncio.to_thread(pickled)
    # zlib lets go of the interpreter while it compresses: the two are compressed side by side (1M: 2.1 → 1.1 s)
    data, inputs = await asyncio.gather(asyncio.to_thread(zlib.compress, data, 1),
                                        asyncio.to_thread(zlib.compress, inputs, 1) if inputs is not None
                                        else asyncio.sleep(0))
    await session.commit()  # the reads' transaction ends before the write
    started = perf_counter()
    values = dict(key=key, made_for=today, version=version, made_at=made_at or datetime.now(UTC), data=data,
                  inputs=inputs)
    insert = (sqlite_insert if session.get_bind().dialect.name == "sqlite" else postgresql_insert)(ReportSnapshot)
    await session.execute(insert.values(**values).on_conflict_do_update(  # never over a newer one (stored later)
        index_elements=[ReportSnapshot.key], set_={k: v for k, v in values.items() if k != "key"},
        where=ReportSnapshot.made_at < values["made_at"]))
    await session.execute(delete(ReportSnapshot).where(ReportSnapshot.made_for < today - timedelta(days=1)))
    for log in (ReportContactChange, ReportCustomerChange):  # (their days are the database's: the real date)
        await session.execute(delete(log).where(log.changed_on < datetime.now(UTC).date() - timedelta(
            days=CONTACT_LOG_DAYS)))
    await session.commit()
    return len(data) + len(inputs or b""), perf_counter() - started


async def is_prepared(session: AsyncSession, viewer: Viewer, **options) -> bool:
    """Whether a report with these options was prepared for this day (still valid or not)."""
    return await session.scalar(select(func.count()).select_from(ReportSnapshot).where(
        ReportSnapshot.key == snapshot_key(viewer, **options))) > 0


async def build(session: AsyncSession, viewer: Viewer, *, kind: str = "week", today: date,
                language: str = "zh_Hans", timezone: str = "Asia/Shanghai", trend_months: int = 12,
                rfm_days: int = RFM_DAYS, company: tuple[Sums, Sums] | None = None) -> Report:
    """Every analysis for the viewer's scope over the period of `kind` ending yesterday, RFM over the
    `rfm_days` days up to its end (`company`: the whole company's sums over the RFM window and the
    previous one, when they are at hand — `_company_windows`)."""
    if rfm_days not in RFM_WINDOWS:
        raise DomainError(N_("the RFM window must be 90, 180, 365 or 730 days"))
    with collector_paused():
        return await _build(session, viewer, kind=kind, today=today, language=language, timezone=timezone,
                            trend_months=trend_months, rfm_days=rfm_days, company=company)


async def _company_windows(session: AsyncSession, held_here: OrderedDict[str, _Held], version: str,
                           period: Period, rfm_days: int) -> tuple[Sums, Sums] | None:
    """The whole company's sums over an RFM window and the previous one, from a report held in memory over
    the same window and as long a period — any scope: those sums are the company's (RFM ranks every
    buyer). A team's or one rep's report asked for after the manager's then reads only its own customers
    (at 1M customers, the two windows are most of a build's reading). Made from the same data (its version
    is this one), they are taken as they are; made before some customers changed (a late order, an edit),
    those customers' sums are read again in place of theirs (as `_brought_up_to_date` does), when the
    report is from today or yesterday (the log of changed customers reaches back that far) and not more
    than `_FEW_CUSTOMERS` changed. Only a report already stored and still the stored one counts (as for
    serving it: a database restored since holds other stored reports)."""
    window, previous = _windows(period, rfm_days)
    recent = datetime.now(UTC).date() - timedelta(days=1)
    candidates = [(key, held) for key, held in reversed(list(held_here.items()))
                  if held.stored and held.report.inputs is not None and held.report.rfm_window == window
                  and held.report.period.days == period.days and not _behind(version, held.version)
                  and (held.version == version or (_updatable(held.version, version) and held.made_at.date() >= recent))]
    candidates.sort(key=lambda pair: pair[1].version != version)  # the same data first (stable: newest first)
    for key, held in candidates:
        if not await _still_stored(session, key, held):
            continue
        inputs = held.report.inputs
        if held.version == version:
            return inputs.now, inputs.before
        if (await _triggers(session))[1] != _CUSTOMER_TRIGGERS:
            return None
        changed = await _changed_since(session, held.made_at)
        if changed is None:
            return None
        alive: list[int] = []  # the changed customers that are not archived: in RFM's population
        for chunk in _chunks(changed):
            alive += (await session.execute(select(Customer.id).where(
                Customer.id.in_(chunk), Customer.archived_at.is_(None)))).scalars()
        population = np.unique(np.asarray(alive, dtype=np.int64))
        return (_replaced(inputs.now, changed, await _sums_of(session, population, window)),
                _replaced(inputs.before, changed, await _sums_of(session, population, previous)))
    return None


async def _still_stored(session: AsyncSession, key: str, held: _Held) -> bool:
    """Whether the report held under `key` is still the stored one (not replaced by another process's newer
    one, nor gone with a database restored since): only then may other reports be made from it."""
    stored_at = await session.scalar(select(ReportSnapshot.made_at).where(ReportSnapshot.key == key))
    return stored_at is not None and as_utc(stored_at) == held.made_at


def _windows(period: Period, rfm_days: int) -> tuple[Period, Period]:
    """The RFM window up to the period's end, and the previous one (shifted back by the period)."""
    window = Period(period.end - timedelta(days=rfm_days - 1), period.end)
    return window, Period(window.start - timedelta(days=period.days), window.end - timedelta(days=period.days))


async def _feedback(session: AsyncSession, viewer: Viewer, period: Period, zone: ZoneInfo,
                    only: list[int] | None = None) -> list[FeedbackInfo]:
    """The feedback on the viewer's customers (or on those in `only`, the viewer's) recorded during the
    period's local days, and every open one, in the order it was recorded; times in local time."""
    start, end = _utc_bounds(period, zone)
    query = _scope(select(Feedback).join(Customer, Customer.id == Feedback.customer_id).where(
        or_((Feedback.created_at >= start) & (Feedback.created_at < end), Feedback.status == "open")), viewer)
    if only is not None:
        query = query.where(Feedback.customer_id.in_(only))
    return [FeedbackInfo(f.id, f.customer_id, f.kind, f.product, f.rating, f.status,
                         as_utc(f.created_at).astimezone(zone), as_utc(f.resolved_at).astimezone(zone)
                         if f.resolved_at else None, f.user_id)
            for f in (await session.execute(query.order_by(Feedback.id))).scalars()]


async def _build(session: AsyncSession, viewer: Viewer, *, kind: str, today: date, language: str, timezone: str,
                 trend_months: int, rfm_days: int, company: tuple[Sums, Sums] | None = None) -> Report:
    period = period_for(kind, today)
    zone = ZoneInfo(timezone)
    purchase_days = await _purchase_days(session)  # before the purchases: a change meanwhile counts as one
    labels, cycles = await _labels(session, language)
    rows = await _customer_rows(session, viewer)
    customers = _customer_table(rows, labels, cycles)
    window, previous = _windows(period, rfm_days)
    now_aggs, before_aggs, in_period, year_before = await _rfm_windows(session, viewer, period, window, previous,
                                                                       customers, company)
    inputs = Inputs((rows.region, rows.scale, rows.nature, rows.industry, rows.strategy), now_aggs, before_aggs,
                    in_period, year_before, await load_contacts(session, viewer, period, zone),
                    await _feedback(session, viewer, period, zone), purchase_days)
    return await _compose(session, viewer, kind, period, window, previous, customers, inputs, trend_months)


async def _purchase_days(session: AsyncSession) -> dict[date, int]:
    """How often the purchases of each day have changed (report_change, kept by triggers)."""
    return {day: int(n) for day, n in (await session.execute(
        select(ReportChange.day, func.sum(ReportChange.n)).where(ReportChange.part == "purchase")
        .group_by(ReportChange.day))).all()}


async def _compose(session: AsyncSession, viewer: Viewer, kind: str, period: Period, window: Period,
                   previous: Period, customers: CustomerTable, inputs: Inputs, trend_months: int) -> Report:
    """The report from what it is made of (the customers and `inputs`), and the sales per month (the day
    ranges in `inputs.range_sums` are not read again)."""
    # RFM (the heaviest analysis) runs in a worker thread, so the bot's event loop keeps answering others
    # meanwhile — and the other analyses and the sales per month are worked out beside it (numpy lets go
    # of the interpreter in its sorts and searches; the reads wait on the database).
    scoring = asyncio.ensure_future(asyncio.to_thread(analytics.rfm_report, inputs.now, inputs.before, window,
                                                      previous, within=customers))
    try:
        accounts, total = analytics.key_accounts_of(inputs.in_period, inputs.year_before)
        at = analytics._lookup(customers.ids, inputs.in_period.ids)  # the same for every dimension
        distribution = {dimension: analytics.distribution_of(customers.ids, *customers.dimensions[dimension],
                                                             inputs.in_period, at)
                        for dimension in CustomerTable.DIMENSIONS}
        performance = analytics.performance_of(inputs.in_period, inputs.year_before)
        rep_performance = analytics.performance_by(inputs.in_period, inputs.year_before, customers)
        complaints = analytics.complaints(inputs.feedback, customers, period)  # feedback times are local
        activity = analytics.team_activity(inputs.contacts, customers, period, period.end)
        satisfaction = analytics.satisfaction(inputs.feedback, customers, period)
        reps = dict((await session.execute(select(User.id, User.name))).all())
        scope = await purchase_scope(session, viewer)
        range_sums = inputs.range_sums  # the trend's months and the period's are mostly the same
        if viewer.owners is not None:  # a team: both in one pass over its sales per day
            await _team_ranges(session, scope, [p for pair in _trend_ranges(period.end, trend_months) for p in pair] +
                               [p for part in _period_parts(period) for p in (part, part.year_before())], range_sums)
        trend = await monthly_trend(session, viewer, period.end, trend_months, scope, sums=range_sums)
        months = await period_months(session, viewer, period, scope, sums=range_sums)
    except BaseException:
        scoring.add_done_callback(lambda done: done.cancelled() or done.exception())  # (its outcome is not wanted)
        raise
    rfm = await scoring
    return Report(
        period=period, kind=kind, customers=customers, reps=reps, rfm=rfm, rfm_window=window,
        churn=analytics.churn_priority(rfm, inputs.before), key_accounts=accounts, total_cents=total,
        distribution=distribution, performance=performance, rep_performance=rep_performance, complaints=complaints,
        activity=activity, satisfaction=satisfaction, trend=trend, months=months, inputs=inputs,
    )


async def _changed_since(session: AsyncSession, made_at: datetime) -> np.ndarray | None:
    """The customers whose purchases, interactions, feedback or report columns changed since the day before
    `made_at` (report_customer_change: the day before covers a change committed while a report was being
    made), sorted; None when more than `_FEW_CUSTOMERS` did, or when the log no longer reaches back that far
    (`_logged_since`)."""
    if not _logged_since(made_at):
        return None
    changed = list((await session.execute(select(ReportCustomerChange.customer_id).where(
        ReportCustomerChange.changed_on >= made_at.date() - timedelta(days=1)).distinct()
        .limit(_FEW_CUSTOMERS + 1))).scalars())
    if len(changed) > _FEW_CUSTOMERS:
        return None
    return np.unique(np.asarray(changed, dtype=np.int64))


async def _sums_of(session: AsyncSession, ids: np.ndarray, part: Period) -> Sums:
    """The window's sums of the customers `ids`, whoever owns them (each in one IN list: each customer once)."""
    everyone = Viewer.everyone()
    parts = [Sums.empty()] + [await _aggregates(session, everyone, part, Purchase.customer_id.in_(chunk))
                              for chunk in _chunks(ids)]
    return Sums.of(*(np.concatenate(column) for column in zip(*parts, strict=True)))


def _replaced(kept: Sums, changed: np.ndarray, fresh: Sums) -> Sums:
    """Window sums with the rows of the `changed` customers (sorted) replaced by their `fresh` ones (some
    of the changed, sorted): put in their places, not appended and the million rows sorted again."""
    keep = ~analytics._member(kept.ids, changed)
    rest = kept if bool(keep.all()) else Sums(*(a[keep] for a in kept))
    at = np.searchsorted(rest.ids, fresh.ids)
    return Sums(*(np.insert(a, at, b) for a, b in zip(rest, fresh, strict=True)))


async def _brought_up_to_date(session: AsyncSession, viewer: Viewer, report: Report, inputs: Inputs,
                              made_at: datetime, *, kind: str, today: date, language: str, timezone: str,
                              trend_months: int, rfm_days: int) -> Report | None:
    """Rule "a prepared report is brought up to date customer by customer": the customers whose
    purchases, interactions, feedback or report columns changed since the day before it was made
    (report_customer_change, kept by triggers: the day before covers a change committed while it was being
    made) are read again — their row, their sums in each window, their contacts and feedback of the period
    — in place of what the prepared report holds of them; everything the report shows is then worked out
    again from those inputs (RFM ranks the whole company, so one customer's order can move others'
    scores), and the sales per month read again for the day ranges that changed (below). The same figures
    as a report built now. None (build it)
    when more than `_FEW_CUSTOMERS` changed, or when the viewer's customers then differ in number from
    those in the database (a change the log missed)."""
    changed = await _changed_since(session, made_at)
    if changed is None:
        return None
    purchase_days = await _purchase_days(session)  # before the purchases, as in a build
    period = period_for(kind, today)
    zone = ZoneInfo(timezone)
    window, previous = _windows(period, rfm_days)
    if report.period != period:  # made on an earlier day (`_carried_forward`)
        moved = (period.end - report.period.end).days
        if report.period.days != period.days or not 0 < moved < period.days:
            return None
        inputs = await _moved_on(session, viewer, inputs, report.period, period, zone, rfm_days)
    table = report.customers
    rows = CustomerRows(table.ids, table.owner, *inputs.entries, table.last_contact, table.names, table.codes)
    fresh = CustomerRows(*(np.zeros(0, dtype=np.int64),) * 8, [], [])
    population: list[int] = []  # the changed customers that are not archived: in RFM's population
    for chunk in _chunks(changed):
        fresh = fresh.merged(await _customer_rows(session, viewer, only=chunk))
        population += (await session.execute(select(Customer.id).where(
            Customer.id.in_(chunk), Customer.archived_at.is_(None)))).scalars()
    rows = rows.updated(changed, fresh)
    if await session.scalar(_scope(select(func.count()).select_from(Customer), viewer)) != rows.ids.size:
        return None
    last = await _current_last_contacts(session, viewer, rows.ids, rows.last_contact, made_at)
    if last is None:
        return None
    rows = rows._replace(last_contact=last)
    population_ids = np.unique(np.asarray(population, dtype=np.int64))

    async def sums(ids: np.ndarray, part: Period) -> Sums:
        return await _sums_of(session, ids, part)
    mine = fresh.ids
    keep = ~analytics._member(inputs.contacts.customer, changed)
    contacts = [Contacts(*(c[keep] for c in inputs.contacts))]
    gone = set(changed.tolist())
    feedback = [f for f in inputs.feedback if f.customer_id not in gone]
    for chunk in _chunks(mine):
        contacts.append(await load_contacts(session, viewer, period, zone, only=chunk))
        feedback += await _feedback(session, viewer, period, zone, only=chunk)
    updated = Inputs(
        (rows.region, rows.scale, rows.nature, rows.industry, rows.strategy),
        _replaced(inputs.now, changed, await sums(population_ids, window)),
        _replaced(inputs.before, changed, await sums(population_ids, previous)),
        _replaced(inputs.in_period, changed, await sums(mine, period)),
        _replaced(inputs.year_before, changed, await sums(mine, period.year_before())),
        Contacts(*(np.concatenate(c) for c in zip(*contacts, strict=True))),
        sorted(feedback, key=lambda f: f.id))
    # The sales of a day range change only with the purchases of its days (counted per day), or when a
    # customer with purchases joined or left the scope (added, archived, moved to or from the team: in
    # the kept report's customers or in the scope now, not both; each report reads at one moment,
    # `_one_moment`): the ranges of the other days are kept.
    days = {day for day in purchase_days.keys() | inputs.purchase_days.keys()
            if purchase_days.get(day) != inputs.purchase_days.get(day)}
    for chunk in _chunks(np.setxor1d(changed[analytics._member(changed, table.ids)], fresh.ids)):
        days.update((await session.execute(select(Purchase.purchased_on).where(Purchase.customer_id.in_(chunk))
                                           .distinct())).scalars())
    touched = sorted(days)
    updated.purchase_days = purchase_days
    updated.range_sums = {(start, end): total for (start, end), total in inputs.range_sums.items()
                          if bisect.bisect_left(touched, start) == bisect.bisect_right(touched, end)}
    customers = _customer_table(rows, *await _labels(session, language))
    return await _compose(session, viewer, kind, period, window, previous, customers, updated, trend_months)


async def _carried_forward(session: AsyncSession, viewer: Viewer, held_here: OrderedDict[str, _Held], version: str,
                           options: dict[str, Any]) -> Report | None:
    """Rule "yesterday's report carries over to today": the report prepared yesterday for the same scope and
    options (held in memory, or its stored copy), moved on by a day and brought up to date for the
    customers that changed since (`_brought_up_to_date`, `_moved_on`) — the same report as one built now,
    reading a day's rows at each end of its windows instead of all of them (at 1M customers a build reads
    every purchase of two years). None when there is none, or it cannot be told what changed since."""
    key = snapshot_key(viewer, **{**options, "today": options["today"] - timedelta(days=1)})
    row = (await session.execute(select(ReportSnapshot.made_at, ReportSnapshot.version)
                                 .where(ReportSnapshot.key == key))).first()
    if row is None:
        return None
    row_made = as_utc(row.made_at)
    held = held_here.get(key)
    if held is not None and held.report.inputs is not None and (
            held.made_at == row_made or not held.stored and row_made in held.lineage):
        report, inputs, kept_version, kept_made = held.report, held.report.inputs, held.version, held.made_at
    else:  # the stored copy (another process made it, or this one was restarted)
        if not _updatable(row.version, version) or _behind(version, row.version):
            return None
        data, inputs = (await session.execute(select(ReportSnapshot.data, ReportSnapshot.inputs).where(
            ReportSnapshot.key == key, ReportSnapshot.made_at == row.made_at))).one()
        if inputs is None:
            return None
        data, inputs = await asyncio.gather(asyncio.to_thread(zlib.decompress, data),
                                            asyncio.to_thread(zlib.decompress, inputs))
        with collector_paused():
            report, inputs = pickle.loads(data), pickle.loads(inputs)
        kept_version, kept_made = row.version, row_made
    if not _updatable(kept_version, version) or _behind(version, kept_version) or \
            (await _triggers(session))[1] != _CUSTOMER_TRIGGERS:
        return None
    with collector_paused():
        return await _brought_up_to_date(session, viewer, report, inputs, kept_made, **options)


def _data_part(version: str) -> str:
    """A version's counts but the contacts' (which count interactions up to a local midnight: `data_version`)."""
    return version.rsplit(":", 1)[0]


async def _company_held(session: AsyncSession, held_here: OrderedDict[str, _Held], key: str, version: str,
                        options: dict[str, Any]) -> tuple[str, _Held, str] | None:
    """The whole company's report held in memory that a report of `options` can be narrowed from: made for
    the same day, period, RFM window and trend, in the language and time zone of `options` or of any active
    manager or admin, still the stored one, and made from the same purchases, customers, feedback, names
    and dictionaries (the parts of its version but the contacts', `_data_part`) — or else from older data
    that changed since only customer by customer (`_updatable`, none of its counts ahead of now's, made
    recently enough for the log of changed customers to tell what changed: `_logged_since`).
    The same data first; then its own language and zone first; never the report asked for itself (`key`)."""
    if not any(held.stored and held.report.inputs is not None for held in held_here.values()):
        return None  # (nothing to narrow from: no query)
    everyone = Viewer.everyone()
    leaders = (await session.execute(select(User.language, User.timezone).distinct().where(
        User.active.is_(True), User.role.in_(["manager", "admin"])))).all()
    zones = [options["timezone"]] + sorted({zone for _, zone in leaders} - {options["timezone"]})
    languages = [options["language"]] + sorted({language for language, _ in leaders} - {options["language"]})
    same_data = _data_part(version)
    older = None
    for zone in zones:
        for language in languages:
            company_key = snapshot_key(everyone, **{**options, "language": language, "timezone": zone})
            held = held_here.get(company_key)
            if company_key == key or held is None or not held.stored or held.report.inputs is None:
                continue
            kept = _data_part(held.version)
            if kept != same_data and (older is not None or not _updatable(held.version, version)
                                      or _behind(same_data, kept) or not _logged_since(held.made_at)):
                continue
            if not await _still_stored(session, company_key, held):
                continue
            if kept == same_data:
                return company_key, held, zone
            older = company_key, held, zone
    return older


class _Narrowed(NamedTuple):
    """What `_brought_up_to_date` reads of a report: a narrowed one before it is worked out."""

    customers: CustomerTable
    period: Period


async def _narrowed(session: AsyncSession, viewer: Viewer, held_here: OrderedDict[str, _Held], key: str,
                    version: str, options: dict[str, Any]) -> Report | None:
    """Rule "a team's report is the company's narrowed to the team": when the whole company's report for the
    same day, period, RFM window and trend is held in memory and still the stored one (`_company_held`: in
    any manager's or admin's language and time zone), a team's (or one rep's) report is made from it — the
    team's customers, their sums in the period and the year before taken from the company's inputs (the RFM
    windows are the company's anyway), and their contacts and feedback too when the company's report is of
    the same time zone and contacts — instead of reading them (at 1M customers a team's report read about a
    fifth of the company's rows). Their last contacts are read afresh (`_current_last_contacts`), the labels
    in the viewer's language, the team's sales per month (they are the team's alone), and the contacts and
    feedback by the viewer's local days when the zone differs (or the contacts alone when only they
    changed). Made from older data (a late order, an edit since), the narrowed report is then brought up to
    date for the customers that changed (`_brought_up_to_date`), as the team's own would be. The whole
    company's report in another language or time zone is made the same way from the one held, its sales per
    month taken too. None when there is no such report."""
    found = await _company_held(session, held_here, key, version, options)
    if found is None:
        return None
    company_key, held, company_zone = found
    same_data = _data_part(held.version) == _data_part(version)
    if not same_data and (await _triggers(session))[1] != _CUSTOMER_TRIGGERS:
        return None
    held_here.move_to_end(company_key)  # used: the last the bound on memory lets go of
    company, inputs = held.report, held.report.inputs
    table = company.customers
    keep = np.ones(table.ids.size, dtype=bool) if viewer.owners is None else \
        np.isin(table.owner, np.fromiter(viewer.owners, dtype=np.int64, count=len(viewer.owners)))
    where = np.flatnonzero(keep).tolist()
    rows = CustomerRows(table.ids[keep], table.owner[keep], *(entries[keep] for entries in inputs.entries),
                        table.last_contact[keep], [table.names[i] for i in where], [table.codes[i] for i in where])
    if same_data:  # (from older data `_brought_up_to_date` reads the changed customers, then checks and reads these)
        if await session.scalar(_scope(select(func.count()).select_from(Customer), viewer)) != rows.ids.size:
            return None  # (never expected: the same data holds the same customers)
        last = await _current_last_contacts(session, viewer, rows.ids, rows.last_contact, held.made_at)
        if last is None:
            return None
        rows = rows._replace(last_contact=last)
    period = period_for(options["kind"], options["today"])
    zone = ZoneInfo(options["timezone"])
    same_zone = company_zone == options["timezone"]
    # The company's contacts serve on the same local days when they are today's, or when the update below
    # reads the changed customers' again (interactions log their customer as changed, as for any update).
    if same_zone and (held.version == version or not same_data):
        theirs = analytics._member(inputs.contacts.customer, rows.ids)
        contacts = Contacts(*(column[theirs] for column in inputs.contacts))
    else:
        contacts = await load_contacts(session, viewer, period, zone)
    if same_zone:
        mine = set(rows.ids.tolist())
        feedback = [f for f in inputs.feedback if f.customer_id in mine]
    else:
        feedback = await _feedback(session, viewer, period, zone)
    narrowed = Inputs((rows.region, rows.scale, rows.nature, rows.industry, rows.strategy), inputs.now, inputs.before,
                      inputs.in_period.within(rows.ids), inputs.year_before.within(rows.ids), contacts, feedback,
                      dict(inputs.purchase_days), dict(inputs.range_sums) if viewer.owners is None else {})
    window, previous = _windows(period, options["rfm_days"])
    customers = _customer_table(rows, *await _labels(session, options["language"]))
    if not same_data:
        return await _brought_up_to_date(session, viewer, _Narrowed(customers, period), narrowed, held.made_at,
                                         **options)
    return await _compose(session, viewer, options["kind"], period, window, previous, customers, narrowed,
                          options["trend_months"])


def _moved(kept: Sums, dropped: Sums, entered: Sums) -> Sums:
    """A window's sums moved on: the purchases of the days it left (`dropped`) taken away — a customer with
    none left leaves it; one with some left keeps their last purchase day, since those left are later — and
    those of the days it reached (`entered`) added."""
    where, present = kept.at(dropped.ids)
    count, amount = kept.count.copy(), kept.amount.copy()
    np.subtract.at(count, where[present], dropped.count[present])
    np.subtract.at(amount, where[present], dropped.amount[present])
    stay = count > 0
    return Sums.merge(Sums(kept.ids[stay], kept.last[stay], count[stay], amount[stay]), entered)


async def _moved_on(session: AsyncSession, viewer: Viewer, inputs: Inputs, old: Period, period: Period,
                    zone: ZoneInfo, rfm_days: int) -> Inputs:
    """A report's inputs, made for the period `old`, moved on to `period` (as long, ending a few days
    later): each window's sums without the days it left and with the days it reached (`_moved`; a window
    that did not simply move on — the year before a period of whole months — is read whole), the contacts
    and feedback of the days it reached added and those of the days it left taken away (feedback still open
    stays). Right for the customers that did not change since; `_brought_up_to_date` reads the others again."""
    everyone = Viewer.everyone()
    company = await purchase_scope(session, everyone)
    mine = await purchase_scope(session, viewer) if viewer.owners is not None else company

    async def moved(kept: Sums, before: Period, now: Period, scope) -> Sums:
        if not (before.start <= now.start <= before.end + timedelta(days=1) and before.end <= now.end):
            return await _aggregates(session, everyone, now, scope)
        return _moved(kept, await _aggregates(session, everyone, Period(before.start, now.start - timedelta(days=1)),
                                              scope),
                      await _aggregates(session, everyone, Period(before.end + timedelta(days=1), now.end), scope))
    (old_window, old_previous), (window, previous) = _windows(old, rfm_days), _windows(period, rfm_days)
    reached = Period(old.end + timedelta(days=1), period.end)
    keep = inputs.contacts.day >= period.start.toordinal()
    contacts = Contacts(*(np.concatenate([kept[keep], new]) for kept, new in zip(
        inputs.contacts, await load_contacts(session, viewer, reached, zone), strict=True)))
    feedback = {f.id: f for f in inputs.feedback if f.status == "open" or f.created_at.date() >= period.start}
    feedback.update((f.id, f) for f in await _feedback(session, viewer, reached, zone))
    return Inputs(inputs.entries, await moved(inputs.now, old_window, window, company),
                  await moved(inputs.before, old_previous, previous, company),
                  await moved(inputs.in_period, old, period, mine),
                  await moved(inputs.year_before, old.year_before(), period.year_before(), mine),
                  contacts, [feedback[i] for i in sorted(feedback)], inputs.purchase_days, inputs.range_sums)


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
    sums = {} if sums is None else sums
    parts = _period_parts(period)
    if viewer.owners is not None:
        await _team_ranges(session, scope, [p for part in parts for p in (part, part.year_before())], sums)

    async def total(part: Period) -> int:
        return await _range_sum(session, scope, part.start, part.end, sums)
    return [PeriodMonth(part.start.strftime("%Y-%m"), part, await total(part), await total(part.year_before()))
            for part in parts]


def _period_parts(period: Period) -> list[Period]:
    """The calendar months the period touches, each cut to the days inside it."""
    parts = []
    start = period.start
    while start <= period.end:
        next_month = (start.replace(day=28) + timedelta(days=4)).replace(day=1)
        parts.append(Period(start, min(period.end, next_month - timedelta(days=1))))
        start = next_month
    return parts


def _trend_ranges(end: date, months: int) -> list[tuple[Period, Period]]:
    """The trend's months up to `end` (the current one up to `end`), each with the same month a year earlier
    (the current one up to the same day)."""
    first = date(end.year, end.month, 1)
    starts = []
    for _ in range(months):
        starts.append(first)
        first = (first - timedelta(days=1)).replace(day=1)
    starts.reverse()
    a_year_back = Period(end, end).year_before().end

    def month(start: date, cap: date) -> Period:
        return Period(start, min((start.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1), cap))
    return [(month(start, end), month(start.replace(year=start.year - 1), a_year_back)) for start in starts]


async def _team_ranges(session: AsyncSession, scope, ranges: list[Period], sums: dict[tuple[date, date], int]) -> None:
    """The team's sales over each of `ranges` not in `sums` yet, put there, from one pass summing the team's
    sales per day over all of them — instead of a range sum each, every one looking the team's customers
    up row by row (the months of a team's year and of its trend at 1M customers: 8 s and 3 s)."""
    wanted = {(p.start, p.end) for p in ranges if p.start <= p.end} - sums.keys()
    if len(wanted) <= 2:
        return
    low, high = min(a for a, _ in wanted), max(b for _, b in wanted)
    days = dict((await session.execute(select(Purchase.purchased_on, func.sum(Purchase.amount_cents)).where(
        Purchase.voided_at.is_(None), Purchase.purchased_on.between(low, high), scope)
        .group_by(Purchase.purchased_on))).all())
    ordered = sorted(days)
    running = np.cumsum([0] + [int(days[day]) for day in ordered])
    for a, b in wanted:  # the sum of the days from a to b: a difference of running totals
        sums[(a, b)] = int(running[bisect.bisect_right(ordered, b)] - running[bisect.bisect_left(ordered, a)])


async def monthly_trend(session: AsyncSession, viewer: Viewer, end: date, months: int,
                        scope=None, *, sums: dict[tuple[date, date], int] | None = None) -> list[tuple[str, int, int]]:
    """Sales per calendar month for the `months` months up to `end`, with the same month a year earlier
    (a range sum per month over the covering date index: cheaper than grouping every purchase by month;
    a team's from one pass over its sales per day, `_team_ranges`)."""
    scope = scope if scope is not None else await purchase_scope(session, viewer)
    sums = {} if sums is None else sums
    ranges = _trend_ranges(end, months)
    if viewer.owners is not None:
        await _team_ranges(session, scope, [p for pair in ranges for p in pair], sums)

    async def total(part: Period) -> int:
        return await _range_sum(session, scope, part.start, part.end, sums)
    return [(now.start.strftime("%Y-%m"), await total(now), await total(before)) for now, before in ranges]


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
