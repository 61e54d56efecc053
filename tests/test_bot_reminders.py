"""/today, the reminder buttons (snooze, done, reassign), and a complaint reaching the manager."""

from __future__ import annotations

import json
from datetime import UTC, datetime, time, timedelta

import pytest
from aiogram.methods import EditMessageReplyMarkup, EditMessageText
from sqlalchemy import select, update

from bot.callbacks import FeedbackCallback, ReassignCallback, ReminderCallback
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


async def test_today_lists_what_is_due_most_urgent_first_with_buttons(app):
    [agenda] = (await app.send(text_update(person(REP, language="en"), "/today"))).sent()
    assert agenda.text.startswith("<b>Due today: 2</b>")
    lines = agenda.text.splitlines()
    assert lines[2].startswith("① 🔴 Acme Trading: never contacted, added 30 days ago (cycle 7 days) — overdue")
    assert lines[3].startswith("② 🟡 Beta Foods")
    [overdue, due] = await open_reminders(app, app.rep.id)
    assert ReminderCallback(action="snooze", id=overdue.id, days=3).pack() in buttons(agenda)
    assert ReminderCallback(action="done", id=due.id).pack() in buttons(agenda)
    assert len(agenda.reply_markup.inline_keyboard) == 2
    # The manager sees the escalation, with a reassign button.
    [escalations] = (await app.send(text_update(person(BOSS, language="en"), "/today"))).sent()
    assert "Acme Trading" in escalations.text and "owner: Sam" in escalations.text
    [escalation] = await open_reminders(app, app.boss.id)
    assert ReassignCallback(customer=overdue.customer_id, reminder=escalation.id).pack() in buttons(escalations)


async def test_snooze_and_done_from_the_buttons(app):
    rep = person(REP, language="en")
    [agenda] = (await app.send(text_update(rep, "/today"))).sent()
    [overdue, due] = await open_reminders(app, app.rep.id)
    sent = await app.send(button_update(rep, ReminderCallback(action="snooze", id=overdue.id, days=3).pack(),
                                        on=agenda))
    [answer] = sent.answers()
    assert answer.text.startswith("Snoozed until")
    [edit] = [r for r in sent.requests if isinstance(r, EditMessageReplyMarkup)]  # its row leaves the agenda
    assert len(edit.reply_markup.inline_keyboard) == 1
    assert ReminderCallback(action="done", id=due.id).pack() in [
        b.callback_data for row in edit.reply_markup.inline_keyboard for b in row]
    await app.send(button_update(rep, ReminderCallback(action="done", id=due.id).pack()))
    [agenda] = (await app.send(text_update(rep, "/today"))).sent()
    assert agenda.text == "Nothing due today. 🎉" and agenda.reply_markup is None
    # A stale button (already done) and somebody else's reminder change nothing and say why.
    [stale] = (await app.send(button_update(rep, ReminderCallback(action="done", id=due.id).pack()))).answers()
    assert stale.show_alert and "already closed" in stale.text
    [foreign] = (await app.send(button_update(person(OTHER, language="en"), ReminderCallback(
        action="snooze", id=overdue.id, days=1).pack()))).answers()
    assert foreign.show_alert and "not yours" in foreign.text
    [bad] = (await app.send(button_update(rep, f"rem:snooze:{overdue.id}:5"))).answers()  # a forged snooze
    assert bad.show_alert
    async with app.sessions() as session:
        assert (await session.get(Reminder, overdue.id)).snoozed_until is not None


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
