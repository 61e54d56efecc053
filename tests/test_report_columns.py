"""The reports' column versions (issue 18: a year's report over a million customers) give exactly what the
row-by-row analyses gave (tests/analytics_reference.py): on random data full of ties, through the
analyses directly and through services.reports.build over a database; plus the pieces they stand on —
reading columns from the database, local days across clock changes, the lazy views."""

from __future__ import annotations

import pickle
import random
from collections import Counter
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from sqlalchemy import select

from models import Customer, Interaction, Purchase, Role, as_utc
from services import analytics
from services.access import Viewer, viewer_for
from services.analytics import (
    Aggregate,
    Contact,
    CustomerInfo,
    CustomerTable,
    LazyRows,
    Period,
    Sale,
    Score,
    ScoreTable,
    Sums,
)
from services.customers import archive_customer, create_customer
from services.reports import build, local_days
from services.sql import columns
from services.users import add_user
from tests import analytics_reference as reference

REGIONS = [None, "华南", "华东", "西部"]
OWNERS = [None, 3, 7, 12]


def _world(rng: random.Random, period: Period) -> tuple[list[CustomerInfo], list[Sale], list[Contact]]:
    """Customers with ids of one to three digits (so "9" < "10" < "100" as text matters), amounts and days
    from small sets (ties everywhere), sales in the period, a year before and outside both."""
    ids = rng.sample(range(1, 400), rng.randint(0, 40))
    customers = [CustomerInfo(cid, f"c{cid}", rng.choice(OWNERS), rng.choice(REGIONS), rng.choice(REGIONS[:2]),
                              cycle_days=rng.choice([None, 0, 7, 30]),
                              last_contact=rng.choice([None, period.end - timedelta(days=rng.randint(0, 40))]))
                 for cid in ids]
    before = period.year_before()
    days = [period.start, period.end, before.start, before.end, period.start - timedelta(days=1),
            period.start + timedelta(days=period.days // 2), before.start + timedelta(days=before.days // 2)]
    amounts = [0, 100, 100, 250, 1000, 99_999]
    sales = [Sale(rng.choice(ids + [999]), rng.choice(days), rng.choice(amounts))
             for _ in range(rng.randint(0, 80))] if ids else []
    contacts = [Contact(rng.choice(ids), rng.choice([None, 3, 7, 12, 13]),
                        period.start + timedelta(days=rng.randint(-3, period.days + 2)))
                for _ in range(rng.randint(0, 60))] if ids else []
    return customers, sales, contacts


def _aggregates(rng: random.Random, ids: list[int], end: date) -> dict[int, Aggregate]:
    return {cid: Aggregate(cid, end - timedelta(days=rng.choice([0, 0, 3, 40, 200])), rng.choice([1, 1, 2, 5]),
                           rng.choice([100, 100, 500, 7_000])) for cid in ids if rng.random() < 0.8}


@pytest.mark.parametrize("seed", range(120))
def test_the_column_analyses_agree_with_the_row_by_row_reference(seed):
    rng = random.Random(seed)
    end = date(2024, 3, 3) + timedelta(days=rng.randint(0, 800))
    period = Period(end - timedelta(days=rng.choice([7, 30, 91, 365]) - 1), end)
    if rng.random() < 0.3:  # whole calendar months: the year before is the same months
        start = end.replace(day=1)
        period = Period(start, (start.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1))
    customers, sales, contacts = _world(rng, period)

    accounts, total = analytics.key_accounts(sales, period)
    assert (list(accounts), total) == reference.key_accounts(sales, period)
    for dimension in ("region", "scale"):
        key = lambda c, d=dimension: getattr(c, d)  # noqa: E731
        assert analytics.distribution(customers, sales, period, key) == reference.distribution(customers, sales,
                                                                                               period, key)
    owner = {c.id: c.owner_id for c in customers}
    for by in (None, owner.get):
        new, old = analytics.sales_performance(sales, period, by=by), reference.sales_performance(sales, period, by=by)
        assert (list(new.rows), new.top_total, new.top_growth, new.top_decline) == \
            (old.rows, old.top_total, old.top_growth, old.top_decline)
        assert new.prior_cents == sum(p.prior_cents for p in old.rows)
    # The report's own entry points: the period's and the year before's sums as columns.
    in_period = Sums.from_aggregates(reference.aggregate(sales, period).values())
    last_year = Sums.from_aggregates(reference.aggregate(sales, period.year_before()).values())
    table = CustomerTable.from_infos(customers)
    by_rep = analytics.performance_by(in_period, last_year, table)
    old = reference.sales_performance(sales, period, by=lambda cid: owner.get(cid))
    assert (by_rep.rows, by_rep.top_growth, by_rep.top_decline) == (old.rows, old.top_growth, old.top_decline)
    assert list(analytics.performance_of(in_period, last_year).rows) == reference.sales_performance(sales, period).rows

    new_activity = analytics.team_activity(contacts, customers, period, period.end)
    old_activity = reference.team_activity(contacts, customers, period, period.end)
    assert (new_activity.per_rep_week, new_activity.within_cycle, new_activity.crowded) == \
        (old_activity.per_rep_week, old_activity.within_cycle, old_activity.crowded)

    ids = [c.id for c in customers] + [999, 1000]  # the population is wider than the customers looked at
    now, before = _aggregates(rng, ids, period.end), _aggregates(rng, ids, period.start - timedelta(days=1))
    within = rng.choice([None, [c.id for c in customers if rng.random() < 0.6]])
    window, previous = Period(period.end - timedelta(days=364), period.end), period.previous()
    new_rfm = analytics.rfm_report(now, before, window, previous, within=within)
    old_rfm = reference.rfm_report(now, before, window, previous, within=within)
    assert (dict(new_rfm.scores.items()), dict(new_rfm.previous.items())) == (old_rfm.scores, old_rfm.previous)
    assert (new_rfm.segments, new_rfm.segments_before, new_rfm.movement) == \
        (old_rfm.segments, old_rfm.segments_before, old_rfm.movement)
    assert analytics.churn_priority(new_rfm, before) == reference.churn_priority(old_rfm, before)
    assert analytics.churn_priority(new_rfm, Sums.from_aggregates(before.values()), limit=3) == \
        reference.churn_priority(old_rfm, before, limit=3)


def test_the_lazy_views_read_like_the_lists_and_dicts_they_stand_for():
    rows = LazyRows(4, lambda i: i * 10, lambda: np.array([3, 1, 0, 2]))
    assert list(rows) == [30, 10, 0, 20] and rows == [30, 10, 0, 20] and rows[-1] == 20 and rows[1:3] == [10, 0]
    assert len(rows) == 4 and rows != [30] and LazyRows(0, str) == []
    with pytest.raises(IndexError):
        rows[4]
    column = lambda *values: np.array(values, dtype=np.int64)  # noqa: E731
    scores = ScoreTable(column(2, 5), column(1, 5), column(2, 4), column(3, 3), column(7, 0))
    assert scores[5] == Score(5, 4, 3, "champions") and 2 in scores and 3 not in scores and "2" not in scores
    assert dict(scores) == {2: Score(1, 2, 3, "lost"), 5: Score(5, 4, 3, "champions")}
    scores.update({9: Score(3, 3, 3, "potential")})  # a change makes it a plain dict; the columns follow
    assert len(scores) == 3 and scores.columns()[0].tolist() == [2, 5, 9]
    table = CustomerTable.from_infos([CustomerInfo(8, "b", None, "华南"), CustomerInfo(3, "a", 7, None, cycle_days=5,
                                                                                          last_contact=date(2026, 1, 2))])
    assert list(table) == [3, 8] and table[8] == CustomerInfo(8, "b", None, "华南") and 4 not in table
    assert table.get(3) == CustomerInfo(3, "a", 7, None, cycle_days=5, last_contact=date(2026, 1, 2))
    assert table.owners_of(column(3, 8, 99)).tolist() == [7, -1, -1]


@pytest.mark.parametrize("zone", ["Asia/Shanghai", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe",
                                  "America/Sao_Paulo"])
def test_local_days_are_the_zones_calendar_days_across_clock_changes(zone):
    tz = ZoneInfo(zone)
    start, end = datetime(2017, 1, 1, tzinfo=UTC), datetime(2019, 3, 1, tzinfo=UTC)  # Sao Paulo still had DST
    rng = random.Random(zone)
    moments = [rng.randint(int(start.timestamp()), int(end.timestamp())) for _ in range(3000)]
    day, offsets = start, set()
    while day < end:  # every local midnight and every change of offset, and a second either side
        midnight = int(datetime.combine(day.astimezone(tz).date(), time(), tz).timestamp())
        moments += [midnight - 1, midnight, midnight + 1]
        offset = day.astimezone(tz).utcoffset()
        if offsets and offset not in offsets:
            moments += [int(day.timestamp()) + k for k in range(-3600, 3601, 900)]
        offsets.add(offset)
        day += timedelta(hours=1)
    moments = [m for m in moments if start.timestamp() <= m < end.timestamp()]
    got = local_days(np.array(moments, dtype=np.int64), tz, start, end).tolist()
    assert got == [datetime.fromtimestamp(m, UTC).astimezone(tz).date().toordinal() for m in moments]


async def test_columns_read_numbers_and_texts_as_rows_do(session):
    rep = await add_user(session, name="Rep", role=Role.rep, telegram_id=77001)
    names = ["普通", "with\x1funit separator", "", "tab\tand,comma"]
    for n, name in enumerate(names):
        await create_customer(session, name=name or "x", owner_id=rep.id if n % 2 else None,
                              external_id=f"K{n}" if n != 2 else None)
    query = select(Customer.id, Customer.owner_id, Customer.name, Customer.external_id).order_by(Customer.id)
    rows = (await session.execute(query)).all()
    ids, owners, got_names, codes = await columns(session, query, text=(2, 3))
    assert ids.tolist() == [r[0] for r in rows] and owners.tolist() == [-1 if r[1] is None else r[1] for r in rows]
    assert got_names == [r[2] for r in rows] and codes == [r[3] for r in rows] and codes[2] is None
    plain = await columns(session, query.where(Customer.name != names[1]), text=(2, 3))  # the joined path
    assert plain[2] == [r[2] for r in rows if r[2] != names[1]]
    empty = await columns(session, query.where(Customer.id < 0), text=(2, 3))
    assert empty[0].size == 0 and empty[2] == [] and empty[3] == []


async def test_a_report_gives_what_the_row_by_row_analyses_give_over_the_same_database(session):
    """Two teams, random purchases over three years (voided ones too), contacts around local midnights,
    an archived customer: build() for an admin and for a manager, for each kind of period, against the
    reference analyses fed every purchase row."""
    rng = random.Random(18)
    today = date(2026, 3, 2)
    bosses = [await add_user(session, name=f"Boss {n}", role=Role.manager, telegram_id=78000 + n) for n in range(2)]
    reps = [await add_user(session, name=f"Rep {n}", telegram_id=78100 + n, manager_id=bosses[n % 2].id)
            for n in range(4)]
    customers = [await create_customer(session, name=f"客户{n}", owner_id=rng.choice(reps).id if n % 7 else None)
                 for n in range(40)]
    zone = ZoneInfo("Asia/Shanghai")
    for customer in customers:
        for _ in range(rng.randint(0, 12)):
            session.add(Purchase(customer_id=customer.id, purchased_on=today - timedelta(days=rng.randint(1, 1000)),
                                 amount_cents=rng.choice([100, 500, 500, 12_345]),
                                 voided_at=datetime(2026, 1, 1, tzinfo=UTC) if rng.random() < 0.05 else None))
        for _ in range(rng.randint(0, 4)):
            local = datetime.combine(today - timedelta(days=rng.randint(0, 40)), time(), zone)
            moment = (local + timedelta(seconds=rng.choice([-1, 0, 1, 3600 * 9]))).astimezone(UTC)
            session.add(Interaction(customer_id=customer.id, user_id=rng.choice([r.id for r in reps] + [None]),
                                    kind="call", occurred_at=moment))
    await session.flush()
    await archive_customer(session, customers[5].id)
    active = {c.id: c.owner_id for c in customers if c.id != customers[5].id}
    purchases = [(p.customer_id, p.purchased_on, p.amount_cents) for p in (await session.execute(
        select(Purchase).where(Purchase.voided_at.is_(None)))).scalars() if p.customer_id in active]
    contacts = [(i.customer_id, i.user_id, i.occurred_at) for i in (await session.execute(select(Interaction))).scalars()
                if i.customer_id in active]

    for viewer in (Viewer.everyone(), await viewer_for(session, bosses[0])):
        mine = {cid for cid, owner in active.items() if viewer.owners is None or owner in viewer.owners}
        infos = [CustomerInfo(cid, "", owner) for cid, owner in active.items() if cid in mine]
        for kind in ("week", "month", "quarter", "year"):
            report = await build(session, viewer, kind=kind, today=today, language="en", timezone="Asia/Shanghai")
            period, window = report.period, report.rfm_window
            previous = Period(window.start - timedelta(days=period.days), window.end - timedelta(days=period.days))
            everyone = [Sale(*p) for p in purchases]
            sales = [s for s in everyone if s.customer_id in mine]
            accounts, total = reference.key_accounts(sales, period)
            assert (list(report.key_accounts), report.total_cents) == (accounts, total), kind
            old = reference.sales_performance(sales, period)
            assert (list(report.performance.rows), report.performance.top_growth) == (old.rows, old.top_growth)
            by_rep = reference.sales_performance(sales, period, by=active.get)
            assert report.rep_performance.rows == by_rep.rows
            now, before = reference.aggregate(everyone, window), reference.aggregate(everyone, previous)
            rfm = reference.rfm_report(now, before, window, previous, within=mine)
            assert dict(report.rfm.scores.items()) == rfm.scores and dict(report.rfm.previous.items()) == rfm.previous
            assert report.rfm.movement == rfm.movement and report.churn == reference.churn_priority(rfm, before)
            local = [Contact(cid, uid, as_utc(at).astimezone(zone).date()) for cid, uid, at in contacts
                     if cid in mine]
            activity = reference.team_activity(local, infos, period, period.end)
            assert (report.activity.per_rep_week, report.activity.crowded) == (activity.per_rep_week, activity.crowded)
            assert Counter(report.rfm.segments) == rfm.segments
            # The bot gets its report from its worker process pickled (bot.background): the lazy views too.
            copy = pickle.loads(pickle.dumps(report))
            assert (list(copy.key_accounts), list(copy.performance.rows), dict(copy.rfm.scores.items()),
                    dict(copy.customers.items())) == (accounts, old.rows, rfm.scores, dict(report.customers.items()))
