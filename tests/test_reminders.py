"""The reminder rules, with a controllable clock: every test says what `now` is."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, update

from models import ContactPerson, ContactStrategy, Customer, PurchaseStrategy, Reminder, Stage
from services import reminders
from services.customers import create_customer
from services.interactions import log_interaction, set_next_step
from services.messages import DomainError
from services.purchases import record_purchase
from services.users import add_user

SHANGHAI = ZoneInfo("Asia/Shanghai")


def at(day: date, hour: int = 10, tz: ZoneInfo = SHANGHAI) -> datetime:
    return datetime.combine(day, time(hour), tz).astimezone(UTC)


TODAY = date(2026, 6, 15)  # a Monday
NOW = at(TODAY)


def labels(name: str) -> dict[str, str]:
    return {"label_zh_hans": name, "label_zh_hant": name, "label_en": name}


@pytest.fixture
async def world(session):
    boss = await add_user(session, name="Boss", role="manager", telegram_id=1)
    rep = await add_user(session, name="Rep", telegram_id=2, manager_id=boss.id)
    contact10 = ContactStrategy(code="t10", cycle_days=10, overdue_factor=1.5, **labels("10 days"))
    buy30 = PurchaseStrategy(code="p30", cycle_days=30, **labels("30 days"))
    session.add_all([contact10, buy30])
    await session.flush()

    return SimpleNamespace(boss=boss, rep=rep, contact10=contact10, buy30=buy30)


async def customer(session, world, name: str, *, added_days_ago: int = 400, **values) -> Customer:
    c = await create_customer(session, name=name, owner_id=world.rep.id, **values)
    await session.execute(update(Customer).where(Customer.id == c.id)
                          .values(created_at=NOW - timedelta(days=added_days_ago)))
    await session.refresh(c)
    return c


def kinds(due, customer_id=None):
    return sorted((d.kind, d.user_id) for d in due if customer_id is None or d.customer_id == customer_id)


async def test_contact_clock_due_then_overdue_then_escalated_and_reset_by_a_call(session, world):
    c = await customer(session, world, "广州人易软件有限公司", contact_strategy_id=world.contact10.id)
    await log_interaction(session, customer_id=c.id, kind="visit", occurred_at=at(TODAY - timedelta(days=10)))
    # Contacted exactly one cycle ago: not due yet.
    assert kinds(await reminders.compute_due(session, NOW), c.id) == []
    # One day past the cycle: due, for the owner only.
    due = await reminders.compute_due(session, NOW + timedelta(days=1))
    assert kinds(due, c.id) == [("contact_due", world.rep.id)]
    assert due[0].detail["cycle"] == 10
    # Past 1.5 × the cycle (15 days): overdue for the owner, and escalated to the manager.
    # Day 15 = exactly 1.5 × the cycle: still only due.
    assert kinds(await reminders.compute_due(session, NOW + timedelta(days=5)), c.id) == [("contact_due", world.rep.id)]
    overdue = await reminders.compute_due(session, NOW + timedelta(days=6))
    assert kinds(overdue, c.id) == [("contact_overdue", world.rep.id), ("escalation", world.boss.id)]
    await reminders.apply(session, overdue, NOW + timedelta(days=6))
    # A call (any channel counts) resets the clock and closes the open reminders.
    await log_interaction(session, customer_id=c.id, kind="call", occurred_at=NOW + timedelta(days=6, hours=1))
    assert kinds(await reminders.compute_due(session, NOW + timedelta(days=7)), c.id) == []
    statuses = (await session.execute(select(Reminder.kind, Reminder.status))).all()
    assert sorted(statuses) == [("contact_overdue", "closed"), ("escalation", "closed")]


async def test_a_never_contacted_customer_counts_from_when_it_was_added(session, world):
    c = await customer(session, world, "Acme", contact_strategy_id=world.contact10.id, added_days_ago=12)
    [due] = [d for d in await reminders.compute_due(session, NOW) if d.customer_id == c.id]
    assert due.kind == "contact_due" and due.detail["never"] is True


async def test_customers_without_strategy_archived_or_definitely_not_are_left_alone(session, world):
    await customer(session, world, "No strategy")
    await customer(session, world, "Lost cause", contact_strategy_id=world.contact10.id,
                   stage=Stage.definitely_not)
    archived = await customer(session, world, "Archived", contact_strategy_id=world.contact10.id)
    await session.execute(update(Customer).where(Customer.id == archived.id).values(archived_at=NOW))
    assert [d for d in await reminders.compute_due(session, NOW) if d.kind.startswith("contact")] == []


async def test_purchase_lapse_by_strategy(session, world):
    c = await customer(session, world, "Beta", purchase_strategy_id=world.buy30.id)
    await record_purchase(session, customer_id=c.id, purchased_on=TODAY - timedelta(days=30), amount_cents=100,
                          today=TODAY)
    assert kinds(await reminders.compute_due(session, NOW), c.id) == []
    [lapse] = [d for d in await reminders.compute_due(session, NOW + timedelta(days=1)) if d.customer_id == c.id]
    assert lapse.kind == "purchase_lapse" and lapse.detail == {
        "since": (TODAY - timedelta(days=30)).isoformat(), "cycle": 30, "learned": False}


async def test_purchase_lapse_by_the_customers_own_rhythm(session, world):
    c = await customer(session, world, "Gamma")
    for weeks in range(5):  # every 10 days: median gap 10, so the alert comes after max(15, 10 + 7) = 17 days
        await record_purchase(session, customer_id=c.id, purchased_on=TODAY - timedelta(days=17 + 10 * weeks),
                              amount_cents=100, today=TODAY)
    assert (await session.get(Customer, c.id)).purchase_gap_days == 10
    assert [d for d in await reminders.compute_due(session, NOW) if d.kind == "purchase_lapse"] == []
    [lapse] = [d for d in await reminders.compute_due(session, NOW + timedelta(days=1)) if d.kind == "purchase_lapse"]
    assert lapse.detail["learned"] is True and lapse.detail["rhythm"] == 10


async def test_three_purchases_are_not_enough_to_learn_a_rhythm(session, world):
    c = await customer(session, world, "Delta")
    for n in range(3):
        await record_purchase(session, customer_id=c.id, purchased_on=TODAY - timedelta(days=100 + 10 * n),
                              amount_cents=100, today=TODAY)
    assert (await session.get(Customer, c.id)).purchase_gap_days is None
    assert [d for d in await reminders.compute_due(session, NOW) if d.kind == "purchase_lapse"] == []


async def test_thank_you_after_a_purchase_until_someone_calls(session, world):
    c = await customer(session, world, "Epsilon")
    await record_purchase(session, customer_id=c.id, purchased_on=TODAY - timedelta(days=2), amount_cents=100,
                          today=TODAY)
    due = await reminders.compute_due(session, NOW)
    assert kinds(due, c.id) == [("thank_you", world.rep.id)]
    # Four days after the purchase the window (3 days) is over.
    assert kinds(await reminders.compute_due(session, NOW + timedelta(days=2)), c.id) == []
    await reminders.apply(session, due, NOW)
    await log_interaction(session, customer_id=c.id, kind="call", occurred_at=NOW)
    assert kinds(await reminders.compute_due(session, NOW), c.id) == []
    assert (await session.scalar(select(Reminder.status))) == "closed"


async def test_one_thank_you_for_the_latest_of_several_recent_purchases(session, world):
    c = await customer(session, world, "Epsilon Two")
    for days_ago in (3, 1):
        await record_purchase(session, customer_id=c.id, purchased_on=TODAY - timedelta(days=days_ago),
                              amount_cents=100, today=TODAY)
    [thanks] = [d for d in await reminders.compute_due(session, NOW) if d.customer_id == c.id]
    assert (thanks.kind, thanks.due_on, thanks.period) == ("thank_you", TODAY - timedelta(days=1),
                                                          (TODAY - timedelta(days=1)).isoformat())
    # A call earlier on the purchase day itself counts as the thank-you (the local day, not the hour).
    await log_interaction(session, customer_id=c.id, kind="call", occurred_at=at(TODAY - timedelta(days=1), 8))
    assert kinds(await reminders.compute_due(session, NOW), c.id) == []


async def test_a_fractional_rhythm_is_rounded_up_to_whole_days(session, world):
    c = await customer(session, world, "Gamma Two")
    # Gaps 10, 11, 10, 11: median 10.5, so the allowance is ceil(max(15.75, 17.5)) = 18 days.
    day = TODAY - timedelta(days=18)
    for gap in (0, 10, 11, 10, 11):
        day -= timedelta(days=gap)
        await record_purchase(session, customer_id=c.id, purchased_on=day, amount_cents=100, today=TODAY)
    assert (await session.get(Customer, c.id)).purchase_gap_days == 10.5
    assert [d for d in await reminders.compute_due(session, NOW) if d.kind == "purchase_lapse"] == []
    [lapse] = [d for d in await reminders.compute_due(session, NOW + timedelta(days=1)) if d.kind == "purchase_lapse"]
    assert (lapse.detail["cycle"], lapse.due_on) == (18, TODAY + timedelta(days=1))


async def test_the_scans_sweep_closes_what_imported_activity_answered(session, world):
    """Activity logged in the bot closes reminders at once; rows that arrive another way (an import) are
    caught by the scan's sweep, which after its first full pass only looks at what is new."""
    from models import Interaction

    quiet = await customer(session, world, "Iota", contact_strategy_id=world.contact10.id)
    other = await customer(session, world, "Kappa", contact_strategy_id=world.contact10.id)
    await reminders.apply(session, await reminders.compute_due(session, NOW), NOW, sweep=False)
    mark = await reminders.close_answered_since(session, NOW, None)  # first pass: everything
    later = NOW + timedelta(hours=1)
    session.add(Interaction(customer_id=quiet.id, user_id=world.rep.id, kind="call", occurred_at=later,
                            created_at=later))  # as an import writes it: no service call
    await session.flush()
    next_mark = await reminders.close_answered_since(session, later, mark)
    assert next_mark.interaction_id > mark.interaction_id
    status = dict((await session.execute(select(Reminder.customer_id, Reminder.status))).all())
    assert status == {quiet.id: "closed", other.id: "open"}


async def test_an_import_that_gives_a_customer_to_someone_else_closes_the_old_owners_reminders(
        session, world, tmp_path):
    import csv

    from services.importer import import_file

    c = await customer(session, world, "Lambda Trading", contact_strategy_id=world.contact10.id)
    newcomer = await add_user(session, name="Newcomer", telegram_id=3, manager_id=world.boss.id)
    await reminders.apply(session, await reminders.compute_due(session, NOW), NOW)
    assert (await session.scalar(select(Reminder.status).where(Reminder.user_id == world.rep.id))) == "open"
    path = tmp_path / "owners.csv"
    with path.open("w", encoding="utf-8", newline="") as fh:
        csv.writer(fh).writerows([["客户名称", "负责人"], ["Lambda Trading", "Newcomer"]])
    report = await import_file(session, "customers", path, today=TODAY)
    assert report.ok and report.updated == 1
    assert (await session.scalar(select(Customer.owner_id).where(Customer.id == c.id))) == newcomer.id
    assert (await session.scalar(select(Reminder.status).where(Reminder.user_id == world.rep.id))) == "closed"


async def test_the_rules_read_index_ranges_not_whole_tables(sqlite_template, tmp_path):
    """At a million customers the scan is only fast if every rule reads just the customers it needs, from
    an index holding every column it uses (SQLite's plan: a SEARCH of a covering index or by primary key)."""
    import re
    import shutil

    from sqlalchemy import event

    from bot.db import make_engine, make_sessionmaker

    shutil.copyfile(sqlite_template, tmp_path / "plan.sqlite3")
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'plan.sqlite3'}")
    statements = []

    def remember(_conn, _cursor, statement, parameters, _context, _many):
        statements.append((statement, parameters))

    try:
        async with make_sessionmaker(engine)() as session:
            boss = await add_user(session, name="Boss", role="manager", telegram_id=1)
            rep = await add_user(session, name="Rep", telegram_id=2, manager_id=boss.id)
            c = await create_customer(session, name="Theta", owner_id=rep.id)
            c.stage = Stage.not_now
            await record_purchase(session, customer_id=c.id, purchased_on=TODAY - timedelta(days=1),
                                  amount_cents=100, today=TODAY)
            event.listen(engine.sync_engine, "before_cursor_execute", remember)
            await reminders.compute_due(session, NOW)
            event.remove(engine.sync_engine, "before_cursor_execute", remember)
            connection = await session.connection()
            scans = []
            for statement, parameters in statements:
                plan = (await connection.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)).all()
                scans += [(row[-1], statement) for row in plan if re.search(r"\b(customer|purchase)\b", row[-1])
                          and not re.search(r"USING (COVERING INDEX|INTEGER PRIMARY KEY)", row[-1])]
    finally:
        await engine.dispose()
    assert len(statements) > 10 and scans == []


@pytest.mark.parametrize(("today", "expected"), [
    (date(2027, 2, 28), True),   # common year: 29 Feb birthdays are remembered on 28 Feb
    (date(2027, 3, 1), False),
    (date(2028, 2, 28), False),  # leap year: on the day itself
    (date(2028, 2, 29), True),
])
async def test_birthdays_including_29_february(session, world, today, expected):
    c = await customer(session, world, "Zeta")
    person = ContactPerson(customer_id=c.id, name="王芳", title="采购经理", birthday=date(1980, 2, 29))
    plain = ContactPerson(customer_id=c.id, name="李雷", birthday=date(1985, today.month, today.day)
                          if (today.month, today.day) != (2, 29) else date(1984, 2, 29))
    session.add_all([person, plain])
    await session.flush()
    due = [d for d in await reminders.compute_due(session, at(today)) if d.kind == "birthday"]
    assert (person.id in {d.subject_id for d in due}) is expected
    assert plain.id in {d.subject_id for d in due}


async def test_next_step_date_comes_back_unless_the_customer_was_contacted_since(session, world):
    c = await customer(session, world, "Eta")
    visit = await log_interaction(session, customer_id=c.id, kind="visit", user_id=world.rep.id,
                                  occurred_at=NOW - timedelta(days=3))
    await set_next_step(session, visit.id, next_step_on=TODAY + timedelta(days=1), next_step="send the quote")
    assert [d for d in await reminders.compute_due(session, NOW) if d.kind == "next_step"] == []
    [step] = [d for d in await reminders.compute_due(session, NOW + timedelta(days=1)) if d.kind == "next_step"]
    assert (step.user_id, step.subject_id) == (world.rep.id, visit.id)
    await log_interaction(session, customer_id=c.id, kind="call", occurred_at=NOW)
    assert [d for d in await reminders.compute_due(session, NOW + timedelta(days=1)) if d.kind == "next_step"] == []


async def test_prospects_not_now_and_quoted_without_reply(session, world):
    later = await customer(session, world, "Theta", stage=Stage.not_now, expected_purchase_on=TODAY + timedelta(days=8))
    quoted = await customer(session, world, "Iota", stage=Stage.quoted_no_response)
    await log_interaction(session, customer_id=quoted.id, kind="email", occurred_at=NOW - timedelta(days=6))
    assert kinds(await reminders.compute_due(session, NOW)) == []
    assert kinds(await reminders.compute_due(session, NOW + timedelta(days=1))) == [
        ("not_now", world.rep.id), ("quoted", world.rep.id)]
    assert {d.customer_id for d in await reminders.compute_due(session, NOW + timedelta(days=1))} == {
        later.id, quoted.id}


async def test_the_same_reminder_is_created_once_and_snooze_and_done_hold(session, world):
    c = await customer(session, world, "Kappa", contact_strategy_id=world.contact10.id, added_days_ago=11)
    due = await reminders.compute_due(session, NOW)
    assert len(await reminders.apply(session, due, NOW)) == 1
    assert await reminders.apply(session, await reminders.compute_due(session, NOW), NOW) == []  # no duplicate
    rep = world.rep
    [item] = await reminders.agenda(session, rep, NOW)
    await reminders.snooze(session, item.reminder.id, rep, 3, NOW)
    for day in (0, 1, 2):
        assert await reminders.agenda(session, rep, NOW + timedelta(days=day)) == []
    [back] = await reminders.agenda(session, rep, NOW + timedelta(days=3))
    assert back.reminder.id == item.reminder.id and back.customer.id == c.id
    await reminders.finish(session, item.reminder.id, rep, NOW + timedelta(days=3))
    await reminders.apply(session, await reminders.compute_due(session, NOW + timedelta(days=4)), NOW)
    assert await reminders.agenda(session, rep, NOW + timedelta(days=4)) == []
    with pytest.raises(DomainError):
        await reminders.finish(session, item.reminder.id, rep)
    with pytest.raises(DomainError):  # someone else's reminder
        await reminders.snooze(session, item.reminder.id, world.boss, 1)


async def test_an_escalated_customer_given_to_another_rep_closes_the_old_owners_reminders(session, world):
    from services.access import viewer_for
    from services.customers import assign_owner

    c = await customer(session, world, "Lambda", contact_strategy_id=world.contact10.id, added_days_ago=30)
    await reminders.apply(session, await reminders.compute_due(session, NOW), NOW)
    other = await add_user(session, name="Other", telegram_id=3, manager_id=world.boss.id)
    viewer = await viewer_for(session, world.boss)
    with pytest.raises(DomainError):
        await assign_owner(session, await viewer_for(session, world.rep), c.id, other.id)
    await assign_owner(session, viewer, c.id, other.id, user_id=world.boss.id)
    rows = dict((await session.execute(select(Reminder.kind, Reminder.status))).all())
    assert rows == {"contact_overdue": "closed", "escalation": "closed"}
    # The new owner is still behind on it: their reminder, and an escalation naming them, follow.
    due = await reminders.compute_due(session, NOW)
    assert kinds(due, c.id) == [("contact_overdue", other.id), ("escalation", world.boss.id)]
    assert {d.subject_id for d in due if d.kind == "escalation"} == {other.id}
    assert len(await reminders.apply(session, due, NOW)) == 2


async def test_one_users_due_set_reads_only_their_customers_and_equals_the_full_scan(session, world):
    other = await add_user(session, name="Other", telegram_id=3, manager_id=world.boss.id)
    mine = await customer(session, world, "Mine", contact_strategy_id=world.contact10.id, added_days_ago=30)
    theirs = await create_customer(session, name="Theirs", owner_id=other.id, contact_strategy_id=world.contact10.id)
    await session.execute(update(Customer).where(Customer.id == theirs.id)
                          .values(created_at=NOW - timedelta(days=30)))
    everything = await reminders.compute_due(session, NOW, ordered=True)
    for user in (world.rep, other, world.boss):
        assert [d.key for d in await reminders.compute_due(session, NOW, user_id=user.id)] == [
            d.key for d in everything if d.user_id == user.id]
    assert {d.customer_id for d in everything if d.user_id == world.boss.id} == {mine.id, theirs.id}


async def test_a_weekly_customer_is_overdue_on_day_11_not_12_more_than_7_x_1_5(session, world):
    weekly = ContactStrategy(code="t7", cycle_days=7, overdue_factor=1.5, **labels("7 days"))
    session.add(weekly)
    await session.flush()
    c = await customer(session, world, "每周客户", contact_strategy_id=weekly.id)
    await log_interaction(session, customer_id=c.id, kind="visit", occurred_at=at(TODAY - timedelta(days=10)))
    # 10 days: more than the cycle (7), not more than 10.5 — due.
    assert kinds(await reminders.compute_due(session, NOW), c.id) == [("contact_due", world.rep.id)]
    # 11 days: more than 10.5 — overdue and escalated that day (it used to wait for day 12).
    due = await reminders.compute_due(session, NOW + timedelta(days=1))
    assert kinds(due, c.id) == [("contact_overdue", world.rep.id), ("escalation", world.boss.id)]
    assert {d.due_on for d in due if d.customer_id == c.id} == {TODAY + timedelta(days=1)}
