"""Prepared reports brought up to date customer by customer (services.reports._brought_up_to_date) against
reports built from the rows: random changes, changes racing a build, and the customer log's triggers with
concurrent writers on PostgreSQL. Found by a review of the change (issue 18)."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import delete, func, select, update

import services.reports as reports
from bot.db import make_engine, make_sessionmaker
from models import (
    ContactStrategy,
    Customer,
    DictionaryEntry,
    Feedback,
    Interaction,
    Purchase,
    Reminder,
    ReportContactChange,
    ReportCustomerChange,
)
from services.access import Viewer, viewer_for
from services.customers import create_customer
from services.purchases import record_purchase
from tests.test_prepared_reports import Patches, figures
from tests.test_reports import TODAY, _world

BUILD = reports.build


@pytest.fixture
async def world(engine):
    sessions = make_sessionmaker(engine)
    async with sessions() as session:
        boss, rep, big, small, theirs = await _world(session)
        await session.commit()
    return sessions, boss, rep, big, small, theirs


async def _forget_logged(sessions) -> None:
    """The logs as days later: what they list is what the report kept already holds (else every patch
    would read every customer of these small worlds again, and keeping the others would go untested)."""
    async with sessions() as session:
        for log in (ReportCustomerChange, ReportContactChange):
            await session.execute(delete(log))
        await session.commit()


STEPS = 12
CASES = [(s, k, r, tz, team) for s, (k, r, tz, team) in enumerate([
    ("week", 730, "Pacific/Kiritimati", True), ("month", 180, "America/Los_Angeles", False),
    ("quarter", 90, "Asia/Shanghai", True), ("year", 365, "UTC", False),
])]


@pytest.mark.parametrize(("seed", "kind", "rfm_days", "tz", "team"), CASES)
async def test_random_changes_leave_the_report_brought_up_to_date_equal_to_one_built(world, monkeypatch, seed, kind,
                                                                                     rfm_days, tz, team):
    """Twelve random changes in a row — orders added, voided, moved to another customer or day, changed or
    deleted; customers archived, restored, moved between teams, added, deleted, given another region or
    contact strategy; contacts, complaints, resolutions — each followed by a request: the report served
    (brought up to date on the one kept from the request before) equals the report built from the rows,
    whatever the period, RFM window, time zone and scope."""
    sessions, boss, rep, big, small, theirs = world
    patches = Patches(monkeypatch)
    rng = random.Random(seed)
    async with sessions() as session:
        regions = list((await session.execute(select(DictionaryEntry.id).where(DictionaryEntry.kind == "region")))
                       .scalars())[:3]
        st = ContactStrategy(code="c9", cycle_days=9, label_zh_hans="9", label_zh_hant="9", label_en="9")
        session.add(st)
        await session.flush()
        owners = [rep.id, theirs.owner_id, None]
        ids = [big.id, small.id, theirs.id]
        for i in range(8):
            c = Customer(name=f"c{i}", owner_id=rng.choice(owners), region_id=rng.choice(regions + [None]),
                         contact_strategy_id=rng.choice([st.id, None]))
            session.add(c)
            await session.flush()
            ids.append(c.id)
        for _ in range(60):
            session.add(Purchase(customer_id=rng.choice(ids), purchased_on=TODAY - timedelta(days=rng.randint(0, 800)),
                                 amount_cents=rng.randint(1, 50) * 100))
        for _ in range(20):
            session.add(Interaction(customer_id=rng.choice(ids), user_id=rng.choice([rep.id, boss.id, None]), kind="call",
                                    occurred_at=datetime.now(UTC) - timedelta(hours=rng.randint(0, 24 * 400))))
        for _ in range(6):
            session.add(Feedback(customer_id=rng.choice(ids), kind=rng.choice(["complaint", "praise"]),
                                 rating=rng.randint(1, 5), status=rng.choice(["open", "resolved"]),
                                 created_at=datetime.now(UTC) - timedelta(hours=rng.randint(0, 24 * 120))))
        await session.commit()

    async def viewer(session):
        return await viewer_for(session, boss) if team else Viewer.everyone()
    options = dict(kind=kind, today=TODAY, language="en", timezone=tz, rfm_days=rfm_days, trend_months=14)

    async def age_logs():  # what a report already reflects drops out of the logs (as days later)
        await _forget_logged(sessions)

    in_memory = random.Random(seed + 1000)

    async def check(step):
        if in_memory.random() < 0.5:  # starting from the stored copy, as another process (or after a restart)
            reports.forget_held()
        async with sessions() as session:
            served = await reports.prepared(session, await viewer(session), **options)
        async with sessions() as session:
            built = await BUILD(session, await viewer(session), **options)
        assert served == built, step
        assert figures(served) == figures(built), step
        assert served.reps == built.reps, step
        assert served.churn == built.churn and served.rfm.scores == built.rfm.scores, step
        await age_logs()

    await age_logs()
    await check("first")
    for step in range(STEPS):
        async with sessions() as session:
            pids = list((await session.execute(select(Purchase.id))).scalars())
            cids = list((await session.execute(select(Customer.id))).scalars())
            fids = list((await session.execute(select(Feedback.id))).scalars())
            op = rng.choice(["add", "void", "move_c", "move_d", "del_p", "archive", "unarchive", "owner", "new",
                             "contact", "feedback", "resolve", "region", "strategy", "delete_c", "amount"])
            cid = rng.choice(cids)
            if op == "add":
                session.add(Purchase(customer_id=cid, purchased_on=TODAY - timedelta(days=rng.randint(1, 800)),
                                     amount_cents=rng.randint(1, 90) * 100))
            elif op == "void" and pids:
                await session.execute(update(Purchase).where(Purchase.id == rng.choice(pids)).values(voided_at=datetime.now(UTC)))
            elif op == "move_c" and pids:
                await session.execute(update(Purchase).where(Purchase.id == rng.choice(pids)).values(customer_id=cid))
            elif op == "move_d" and pids:
                await session.execute(update(Purchase).where(Purchase.id == rng.choice(pids)).values(
                    purchased_on=TODAY - timedelta(days=rng.randint(1, 800))))
            elif op == "amount" and pids:
                await session.execute(update(Purchase).where(Purchase.id == rng.choice(pids)).values(
                    amount_cents=rng.randint(1, 90) * 100))
            elif op == "del_p" and pids:
                await session.execute(delete(Purchase).where(Purchase.id == rng.choice(pids)))
            elif op == "archive":
                await session.execute(update(Customer).where(Customer.id == cid).values(archived_at=datetime.now(UTC)))
            elif op == "unarchive":
                await session.execute(update(Customer).where(Customer.id == cid).values(archived_at=None))
            elif op == "owner":
                await session.execute(update(Customer).where(Customer.id == cid).values(owner_id=rng.choice(owners)))
            elif op == "new":
                c = Customer(name=f"n{step}", owner_id=rng.choice(owners), region_id=rng.choice(regions))
                session.add(c)
                await session.flush()
                session.add(Purchase(customer_id=c.id, purchased_on=TODAY - timedelta(days=rng.randint(1, 800)),
                                     amount_cents=1234))
            elif op == "contact":
                session.add(Interaction(customer_id=cid, user_id=rng.choice([rep.id, None]), kind="visit",
                                        occurred_at=datetime.now(UTC) - timedelta(hours=rng.randint(0, 24 * 100))))
                await session.execute(update(Customer).where(Customer.id == cid).values(
                    last_contact_at=datetime.now(UTC) - timedelta(hours=rng.randint(0, 24 * 30))))
            elif op == "feedback":
                session.add(Feedback(customer_id=cid, kind="complaint", rating=rng.randint(1, 5),
                                     created_at=datetime.now(UTC) - timedelta(hours=rng.randint(0, 24 * 100))))
            elif op == "resolve" and fids:
                await session.execute(update(Feedback).where(Feedback.id == rng.choice(fids)).values(
                    status="resolved", resolved_at=datetime.now(UTC)))
            elif op == "region":
                await session.execute(update(Customer).where(Customer.id == cid).values(region_id=rng.choice(regions)))
            elif op == "strategy":
                await session.execute(update(Customer).where(Customer.id == cid).values(
                    contact_strategy_id=rng.choice([st.id, None])))
            elif op == "delete_c":
                for table in (Purchase, Feedback, Interaction):
                    await session.execute(delete(table).where(table.customer_id == cid))
                await session.execute(delete(Reminder).where(Reminder.customer_id == cid))
                try:
                    await session.execute(delete(Customer).where(Customer.id == cid))
                except Exception:
                    await session.rollback()
                    continue
            await session.commit()
        await check(f"{step}:{op}:{cid}")
    assert patches.count >= STEPS // 3  # most were brought up to date (some changes are no change)


async def test_a_report_kept_meanwhile_by_another_request_is_not_mixed_with_the_one_read(world, monkeypatch):
    """Between reading the kept report and reading what it was made from, another request (a second manager
    of the team, a double tap, the prepare job) may keep a newer one: the two must not be mixed (customers'
    regions came from the other one, or the request failed)."""
    sessions, boss, rep, big, small, theirs = world

    async def served():
        async with sessions() as session:
            return await reports.prepared(session, await viewer_for(session, boss), kind="year", today=TODAY,
                                          language="en", timezone="UTC")
    await _forget_logged(sessions)
    await served()
    async with sessions() as session:  # one customer deleted, another added with a region and an order
        region = (await session.execute(select(DictionaryEntry.id).where(DictionaryEntry.kind == "region")
                                        .order_by(DictionaryEntry.id))).scalars().first()
        for table in (Purchase, Feedback, Interaction, Reminder):
            await session.execute(delete(table).where(table.customer_id == big.id))
        await session.execute(delete(Customer).where(Customer.id == big.id))
        added = await create_customer(session, name="新", owner_id=rep.id, region_id=region)
        await record_purchase(session, customer_id=added.id, purchased_on=TODAY - timedelta(days=1), amount_cents=5_00,
                              today=TODAY)
        await session.commit()
    real, calls = reports._triggers, []

    async def meanwhile(session):
        result = await real(session)
        calls.append(1)
        if len(calls) == 2:  # on the way to bring it up to date: another request keeps a newer one
            await served()
        return result
    monkeypatch.setattr(reports, "_triggers", meanwhile)
    after = await served()
    async with sessions() as session:
        expected = await BUILD(session, await viewer_for(session, boss), kind="year", today=TODAY, language="en",
                               timezone="UTC")
    assert after == expected and after.customers[small.id].region is None


@pytest.mark.parametrize("team", [False, True], ids=["archived-and-back", "moved-in-and-out"])
async def test_a_customer_in_and_out_of_scope_while_the_report_was_made_is_counted_right_after(world, monkeypatch,
                                                                                              team):
    """A customer archived (or moved into the team) after the report's customers were read and before its
    monthly sales were, and back since: the sales per month kept from that report must not stay wrong."""
    sessions, boss, rep, big, small, theirs = world
    patches = Patches(monkeypatch)
    options = dict(kind="year", today=TODAY, language="en", timezone="UTC")

    async def viewer(session):
        return await viewer_for(session, boss) if team else Viewer.everyone()

    async def served():
        async with sessions() as session:
            return await reports.prepared(session, await viewer(session), **options)
    await _forget_logged(sessions)
    flip = dict(owner_id=rep.id) if team else dict(archived_at=datetime.now(UTC))
    back = dict(owner_id=theirs.owner_id) if team else dict(archived_at=None)
    real, flipped = reports.load_contacts, []

    async def meanwhile(*args, **kwargs):
        if not flipped:
            flipped.append(1)
            async with sessions() as other:
                await other.execute(update(Customer).where(Customer.id == theirs.id).values(**flip))
                await other.commit()
        return await real(*args, **kwargs)
    monkeypatch.setattr(reports, "load_contacts", meanwhile)
    await served()
    monkeypatch.setattr(reports, "load_contacts", real)
    async with sessions() as session:
        await session.execute(update(Customer).where(Customer.id == theirs.id).values(**back))
        await session.commit()
    after = await served()
    async with sessions() as session:
        built = await BUILD(session, await viewer(session), **options)
    assert patches.count == 1 and after == built and figures(after) == figures(built)


async def test_two_writers_of_the_same_customers_in_another_order_do_not_deadlock(pg_url):
    """PostgreSQL: the customer log's triggers only append (a row per customer, day and transaction): two
    transactions recording orders of customers A then B, and B then A, both commit (with an upsert on one
    row per customer the second waited for the first in a circle: deadlock detected)."""
    engine = make_engine(pg_url)
    try:
        sessions = make_sessionmaker(engine)
        async with sessions() as session:
            a, b = Customer(name="甲"), Customer(name="乙")
            session.add_all([a, b])
            await session.commit()
            a, b = a.id, b.id

        def order(customer: int) -> Purchase:
            return Purchase(customer_id=customer, purchased_on=TODAY, amount_cents=100, source="import")
        async with sessions() as one, sessions() as two:
            one.add(order(a))
            await one.flush()
            two.add(order(b))
            await two.flush()

            async def then(session, customer):
                session.add(order(customer))
                await asyncio.wait_for(session.flush(), 10)
                await session.commit()
            await asyncio.gather(then(one, b), then(two, a))
        async with sessions() as session:
            assert await session.scalar(select(func.count()).select_from(Purchase)) == 4
            logged = set((await session.execute(select(ReportCustomerChange.customer_id))).scalars())
            assert logged >= {a, b}
    finally:
        await engine.dispose()


async def test_a_served_report_leaves_its_session_out_of_the_reads_snapshot(world):
    """prepared() reads at one moment and ends that before it returns, whichever way the report came: the
    session then sees what others wrote since and can write (SQLite failed at once with 'database is
    locked', PostgreSQL with a serialization failure, while the snapshot stayed open)."""
    sessions, boss, rep, big, small, theirs = world
    async with sessions() as session:
        viewer = await viewer_for(session, boss)
        await reports.prepared(session, viewer, kind="year", today=TODAY, language="en", timezone="UTC")
        await reports.prepared(session, viewer, kind="year", today=TODAY, language="en", timezone="UTC")  # served
        async with sessions() as other:
            await other.execute(update(Customer).where(Customer.id == big.id).values(name="大客户（改）"))
            await other.commit()
        assert await session.scalar(select(Customer.name).where(Customer.id == big.id)) == "大客户（改）"
        await session.execute(update(Customer).where(Customer.id == small.id).values(notes="写得进去"))
        await session.commit()


def test_changed_customers_rows_are_put_in_place_the_same_as_taken_out_and_merged():
    """CustomerRows.updated's quick way (the same customers before and after: their rows put in place) gives
    what taking the changed customers out and merging their fresh rows in gives, whatever changed."""
    import numpy as np

    from services.reports import CustomerRows

    def rows(ids, tag):
        ids = np.asarray(sorted(ids), dtype=np.int64)
        return CustomerRows(ids, *(ids * k + tag for k in range(2, 9)), [f"n{i}{tag}" for i in ids.tolist()],
                            [None if i % 3 else f"c{i}" for i in ids.tolist()])
    rng = random.Random(7)
    for _ in range(300):
        before = set(rng.sample(range(1, 60), rng.randint(0, 30)))
        changed = set(rng.sample(range(1, 60), rng.randint(0, 12)))
        now = (before - changed) | {c for c in changed if rng.random() < (0.9 if c in before else 0.3)}
        fresh = rows(now & changed, 1)
        kept = rows(before, 0)
        ids = np.asarray(sorted(changed), dtype=np.int64)
        quick, slow = kept.updated(ids, fresh), kept.without(ids).merged(fresh)
        assert all(np.array_equal(a, b) for a, b in zip(quick[:8], slow[:8], strict=True))
        assert quick.names == slow.names and quick.codes == slow.codes
