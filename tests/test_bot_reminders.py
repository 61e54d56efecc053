"""/today, the reminder buttons (snooze, done, reassign), and a complaint reaching the manager."""

from __future__ import annotations

import json
from datetime import UTC, datetime, time, timedelta

import pytest
from aiogram.methods import EditMessageReplyMarkup, EditMessageText
from sqlalchemy import select, update

from bot.callbacks import AgendaCallback, FeedbackCallback, ReassignCallback, ReminderCallback
from models import ContactStrategy, Customer, OutboxMessage, Reminder
from services.customers import create_customer
from services.users import add_user
from tests.botkit import button_update, make_app, person, text_update

BOSS, REP, OTHER = 800, 801, 802


@pytest.fixture
async def app(engine):
    app = await make_app(engine)
    async with app.sessions() as session:
        strategy = ContactStrategy(code="every7", cycle_days=7, label_zh_hans="每周", label_zh_hant="每週",
                                   label_en="weekly")
        session.add(strategy)
        await session.flush()
        boss = await add_user(session, name="Boss", role="manager", telegram_id=BOSS, language="en",
                              timezone="UTC")
        rep = await add_user(session, name="Sam", telegram_id=REP, manager_id=boss.id, language="en",
                             timezone="UTC")
        other = await add_user(session, name="Olga", telegram_id=OTHER, manager_id=boss.id, language="en")
        for name, days in (("Acme Trading", 30), ("Beta Foods", 8)):
            c = await create_customer(session, name=name, owner_id=rep.id, contact_strategy_id=strategy.id)
            await session.execute(update(Customer).where(Customer.id == c.id).values(
                # Noon (UTC, the rep's zone) `days` days ago: the count never depends on the hour the test runs.
                created_at=datetime.combine(datetime.now(UTC).date() - timedelta(days=days), time(12), UTC)))
        await session.commit()
    app.rep, app.boss, app.other = rep, boss, other
    await app.sync()
    return app


def buttons(message):
    return [b.callback_data for row in message.reply_markup.inline_keyboard for b in row]


async def open_reminders(app, user_id):
    async with app.sessions() as session:
        return list((await session.execute(select(Reminder).where(
            Reminder.user_id == user_id, Reminder.status == "open").order_by(Reminder.priority))).scalars())


async def test_today_lists_what_is_due_most_urgent_first_with_a_number_per_item(app):
    rep = person(REP, language="en")
    [agenda] = (await app.send(text_update(rep, "/today"))).sent()
    assert agenda.text.startswith("<b>Due today: 2</b>")
    lines = agenda.text.splitlines()
    assert lines[2].startswith("1. 🔴 Acme Trading: never contacted, added 30 days ago (cycle 7 days) — overdue")
    assert lines[3].startswith("2. 🟡 Beta Foods")
    [overdue, due] = await open_reminders(app, app.rep.id)
    # One row of number buttons: each opens its item's actions (a phone row holds them); then /route's.
    assert [[b.text for b in row] for row in agenda.reply_markup.inline_keyboard] == [["1", "2"], ["🗺 Plan my route"]]
    sent = await app.send(button_update(rep, AgendaCallback(action="item", id=overdue.id).pack(), on=agenda))
    [actions] = [r for r in sent.requests if isinstance(r, EditMessageReplyMarkup)]
    assert AgendaCallback(action="snooze", id=overdue.id, days=3).pack() in buttons(actions)
    assert AgendaCallback(action="done", id=overdue.id).pack() in buttons(actions)
    assert all(len(row) <= 4 for row in actions.reply_markup.inline_keyboard)
    # The manager sees the escalation; its actions offer reassigning the customer.
    boss = person(BOSS, language="en")
    [escalations] = (await app.send(text_update(boss, "/today"))).sent()
    assert "Acme Trading" in escalations.text and "owner: Sam" in escalations.text
    [escalation] = await open_reminders(app, app.boss.id)
    sent = await app.send(button_update(boss, AgendaCallback(action="item", id=escalation.id).pack(), on=escalations))
    [actions] = [r for r in sent.requests if isinstance(r, EditMessageReplyMarkup)]
    assert ReassignCallback(customer=overdue.customer_id, reminder=escalation.id).pack() in buttons(actions)


async def test_snooze_and_done_take_the_line_out_of_the_list_at_once(app):
    rep = person(REP, language="en")
    [agenda] = (await app.send(text_update(rep, "/today"))).sent()
    [overdue, due] = await open_reminders(app, app.rep.id)
    sent = await app.send(button_update(rep, AgendaCallback(action="snooze", id=overdue.id, days=3).pack(),
                                        on=agenda))
    [answer] = sent.answers()
    assert answer.text.startswith("Snoozed until")
    [edit] = [r for r in sent.requests if isinstance(r, EditMessageText)]  # the list, drawn again
    assert "Acme Trading" not in edit.text and edit.text.startswith("<b>Due today: 1</b>")
    assert "1. 🟡 Beta Foods" in edit.text
    sent = await app.send(button_update(rep, AgendaCallback(action="done", id=due.id).pack(), on=agenda))
    [edit] = [r for r in sent.requests if isinstance(r, EditMessageText)]
    assert edit.text == "Nothing due today. 🎉"
    [agenda] = (await app.send(text_update(rep, "/today"))).sent()
    assert agenda.text == "Nothing due today. 🎉" and agenda.reply_markup is None
    # A stale button (already done) and somebody else's reminder change nothing and say why.
    [stale] = (await app.send(button_update(rep, AgendaCallback(action="done", id=due.id).pack()))).answers()
    assert stale.show_alert and "already closed" in stale.text
    [foreign] = (await app.send(button_update(person(OTHER, language="en"), AgendaCallback(
        action="snooze", id=overdue.id, days=1).pack()))).answers()
    assert foreign.show_alert and "not yours" in foreign.text
    [bad] = (await app.send(button_update(rep, f"ag:snooze:0:{overdue.id}:5"))).answers()  # a forged snooze
    assert bad.show_alert
    # The buttons of messages sent before this version still work.
    [old] = (await app.send(button_update(rep, ReminderCallback(action="done", id=overdue.id).pack()))).answers()
    assert old.text.startswith("Done")


async def test_the_manager_reassigns_an_escalated_customer_in_two_taps(app):
    boss = person(BOSS, language="en")
    await app.send(text_update(boss, "/today"))
    [escalation] = await open_reminders(app, app.boss.id)
    [team] = (await app.send(button_update(boss, ReassignCallback(
        customer=escalation.customer_id, reminder=escalation.id).pack()))).sent()
    assert team.text == "Give Acme Trading to:"
    olga = ReassignCallback(customer=escalation.customer_id, reminder=escalation.id, to=app.other.id).pack()
    assert olga in buttons(team)
    sent = await app.send(button_update(boss, olga))
    [edited] = [r for r in sent.requests if isinstance(r, EditMessageText)]
    assert edited.text == "Acme Trading now belongs to Olga."
    async with app.sessions() as session:
        assert (await session.get(Customer, escalation.customer_id)).owner_id == app.other.id
        assert (await session.get(Reminder, escalation.id)).status == "closed"  # answered by the reassignment
    # A rep cannot reassign.
    [refused] = (await app.send(button_update(person(REP, language="en"), olga))).answers()
    assert refused.show_alert


async def test_a_new_complaint_is_queued_for_the_manager(app):
    rep = person(REP, language="en")
    async with app.sessions() as session:
        customer_id = await session.scalar(select(Customer.id).where(Customer.name == "Beta Foods"))
    await app.send(button_update(rep, FeedbackCallback(step="start", id=customer_id).pack()))
    await app.send(button_update(rep, FeedbackCallback(step="kind", value="complaint").pack()))
    await app.send(button_update(rep, FeedbackCallback(step="skip_product").pack()))
    await app.send(button_update(rep, FeedbackCallback(step="rating", value="1").pack()))
    await app.send(text_update(rep, "Invoice was wrong twice"))
    async with app.sessions() as session:
        [notice] = (await session.execute(select(OutboxMessage))).scalars().all()
    assert notice.chat_id == BOSS and notice.kind == "urgent"
    assert "New complaint from Beta Foods" in notice.text and "Invoice was wrong twice" in notice.text
    assert "Recorded by Sam" in notice.text


def test_cli_reminders_due_prints_json_lines(cli_env, capsys):
    import asyncio

    from bot.cli import main
    from bot.db import make_engine, make_sessionmaker, upgrade

    async def prepare() -> None:
        engine = make_engine(cli_env)
        await upgrade(engine)
        async with make_sessionmaker(engine)() as session, session.begin():
            strategy = ContactStrategy(code="every7", cycle_days=7, label_zh_hans="每周", label_zh_hant="每週",
                                       label_en="weekly")
            session.add(strategy)
            await session.flush()
            rep = await add_user(session, name="Sam", telegram_id=REP, timezone="UTC")
            c = await create_customer(session, name="Acme", owner_id=rep.id, contact_strategy_id=strategy.id)
            await session.execute(update(Customer).where(Customer.id == c.id)
                                  .values(created_at=datetime(2026, 3, 1, tzinfo=UTC)))
        await engine.dispose()

    asyncio.run(prepare())
    assert main(["reminders", "due", "--now", "2026-03-05T09:00", "--json"]) == 0
    assert capsys.readouterr().out == ""
    assert main(["reminders", "due", "--now", "2026-03-09T09:00+00:00", "--user", str(REP), "--json"]) == 0
    [line] = capsys.readouterr().out.splitlines()
    row = json.loads(line)
    assert (row["kind"], row["customer"], row["due_on"]) == ("contact_due", "Acme", "2026-03-09")
    assert main(["reminders", "due", "--now", "yesterday"]) == 2
    # Nothing was created: the command only shows.
    async def count() -> int:
        from bot.db import make_engine
        engine = make_engine(cli_env)
        async with make_sessionmaker(engine)() as session:
            n = len((await session.execute(select(Reminder.id))).all())
        await engine.dispose()
        return n
    assert asyncio.run(count()) == 0


async def test_a_long_agenda_pages_through_and_puts_what_counts_first(engine):
    from services import reminders

    app = await make_app(engine)
    today = datetime.now(UTC).date()
    async with app.sessions() as session:
        strategy = ContactStrategy(code="every7", cycle_days=7, label_zh_hans="每周", label_zh_hant="每週",
                                   label_en="weekly")
        session.add(strategy)
        await session.flush()
        rep = await add_user(session, name="Sam", telegram_id=REP, language="en", timezone="UTC")
        # Twelve small customers a month overdue, and one big account only a week overdue.
        for n in range(12):
            c = await create_customer(session, name=f"Small {n:02d}", owner_id=rep.id, contact_strategy_id=strategy.id)
            await session.execute(update(Customer).where(Customer.id == c.id).values(
                rfm_m=1, created_at=datetime.combine(today - timedelta(days=37), time(12), UTC)))
        big = await create_customer(session, name="Big Account", owner_id=rep.id, contact_strategy_id=strategy.id)
        await session.execute(update(Customer).where(Customer.id == big.id).values(
            rfm_m=5, created_at=datetime.combine(today - timedelta(days=14), time(12), UTC)))
        await session.commit()
    await app.sync()
    sam = person(REP, language="en")
    [agenda] = (await app.send(text_update(sam, "/today"))).sent()
    lines = agenda.text.splitlines()
    assert lines[0] == "<b>Due today: 13</b> · page 1 of 3"
    assert "Big Account" in lines[2]  # 8 days late × worth 5 beats 31 days late × worth 1
    assert len([line for line in lines if line[:1].isdigit()]) == 5
    rows = agenda.reply_markup.inline_keyboard
    assert [b.text for b in rows[0]] == ["1", "2", "3", "4", "5"] and [b.text for b in rows[1]] == ["1/3", "▶"]
    sent = await app.send(button_update(sam, rows[1][1].callback_data, on=agenda))
    [page2] = [r for r in sent.requests if isinstance(r, EditMessageText)]
    assert page2.text.splitlines()[0] == "<b>Due today: 13</b> · page 2 of 3"
    assert "6. " in page2.text and "1. " not in page2.text
    assert [b.text for b in page2.reply_markup.inline_keyboard[1]] == ["◀", "2/3", "▶"]
    async with app.sessions() as session:
        user = await session.get(type(rep), rep.id)
        items = await reminders.agenda(session, user)
    assert [i.customer.name for i in items][:1] == ["Big Account"]
