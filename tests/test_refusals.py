"""Refusals are answered in one place (bot/errors.py): handlers let a rule's refusal through, the update is
rolled back — data and conversation step — and the person reads why, with what to do next."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select, update

from bot.callbacks import NewCustomerCallback, OrderCallback
from models import Customer, Purchase, utcnow
from services.customers import create_customer
from services.users import add_user
from tests.botkit import button_update, make_app, person, text_update

REP = 8800


@pytest.fixture
async def app(engine):
    app = await make_app(engine)
    async with app.sessions() as session:
        rep = await add_user(session, name="Rep", telegram_id=REP, language="en")
        customer = await create_customer(session, name="甲公司", owner_id=rep.id)
        await session.commit()
    await app.sync()
    app.customer_id = customer.id
    return app


async def test_a_refused_answer_in_a_conversation_says_why_and_the_step_waits(app):
    rep = person(REP, language="en")
    await app.send(button_update(rep, OrderCallback(step="start", id=app.customer_id).pack()))
    [refused] = (await app.send(text_update(rep, "0"))).sent()
    assert refused.text == "An order needs an amount above zero.\nTry again, or /cancel."
    [asked] = (await app.send(text_update(rep, "500"))).sent()  # still at the amount step
    assert asked.text == "What was ordered?"


async def test_a_step_with_a_skip_button_says_so(app):
    rep = person(REP, language="en")
    await app.send(text_update(rep, "/new 乙公司"))
    [refused] = (await app.send(text_update(rep, "call me"))).sent()
    assert refused.text.endswith("\nTry again, skip, or /cancel.") and "phone" in refused.text
    [regions] = (await app.send(button_update(rep, NewCustomerCallback(step="skip_phone").pack()))).sent()
    assert "Which region?" in regions.text


async def test_a_refusal_after_the_tap_was_answered_comes_as_a_message(app):
    """The order's day button answers the tap first; the customer was archived meanwhile: the refusal is
    sent into the chat, and nothing is saved."""
    rep = person(REP, language="en")
    await app.send(button_update(rep, OrderCallback(step="start", id=app.customer_id).pack()))
    await app.send(text_update(rep, "500"))
    await app.send(text_update(rep, "paper"))
    async with app.sessions() as session:
        await session.execute(update(Customer).where(Customer.id == app.customer_id).values(archived_at=utcnow()))
        await session.commit()
    recorder = await app.send(button_update(rep, OrderCallback(step="day", days_ago=0).pack()))
    [told] = recorder.sent()
    assert told.text == "That customer is not available to you any more."
    async with app.sessions() as session:
        assert await session.scalar(select(func.count(Purchase.id))) == 0


async def test_an_invitation_that_cannot_let_someone_in_is_not_used_up(app):
    """The invitation's manager was made a rep since: the newcomer is told why, and the code stays unused
    (the claim is rolled back with the refusal), so the admin can fix the manager and the link works."""
    from models import Invite, Role, User
    from services.invites import create_invite
    from services.users import set_role

    async with app.sessions() as session:
        admin = await add_user(session, name="Admin", role=Role.admin, telegram_id=8801, language="en")
        boss = await add_user(session, name="Boss", role=Role.manager, telegram_id=8802, language="en")
        invite = await create_invite(session, by=admin, role=Role.rep, manager_id=boss.id)
        await set_role(session, boss.id, Role.rep, by_user_id=admin.id)
        await session.commit()
    [told] = (await app.send(text_update(person(8803, "新人", language="en"), f"/start {invite.code}"))).sent()
    assert "the manager must be a user with the manager or admin role" in told.text
    assert "ask your admin for an invitation" in told.text
    async with app.sessions() as session:
        assert (await session.get(Invite, invite.id)).used_at is None
        assert await session.scalar(select(func.count(User.id)).where(User.telegram_id == 8803)) == 0


async def test_a_refused_command_mid_conversation_gets_no_try_again_hint(app):
    rep = person(REP, language="en")
    await app.send(button_update(rep, OrderCallback(step="start", id=app.customer_id).pack()))
    [refused] = (await app.send(text_update(rep, "/invite"))).sent()  # reps invite nobody
    assert refused.text == "only admins and managers can invite people"
    [asked] = (await app.send(text_update(rep, "500"))).sent()  # and the order still waits for its amount
    assert asked.text == "What was ordered?"
