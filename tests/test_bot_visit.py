"""A rep logs a visit or a call from the card in three taps, with a location check-in or a photo."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from bot.callbacks import LogCallback, NextStepCallback
from models import AuditLog, Customer, Interaction
from services.customers import create_customer
from services.users import add_user
from tests.botkit import button_update, location_update, make_app, person, photo_update, sticker_update, text_update

REP = 300


@pytest.fixture
async def app(state_settings, engine):
    app = await make_app(engine, **state_settings)
    async with app.sessions() as session:
        rep = await add_user(session, name="李业务", telegram_id=REP, language="en", timezone="Asia/Shanghai")
        customer = await create_customer(session, name="广州市人易软件技术有限公司", short_name="人易软件", owner_id=rep.id)
        await session.commit()
    await app.sync()
    app.customer_id = customer.id
    yield app
    await app.dispatcher.storage.close()


async def interactions(app):
    async with app.sessions() as session:
        return list((await session.execute(select(Interaction).order_by(Interaction.id))).scalars())


async def test_visit_with_a_note_and_a_next_step_in_three_taps(app):
    rep = person(REP, language="en")
    [card] = (await app.send(text_update(rep, "人易软件"))).sent()
    buttons = [b.callback_data for row in card.reply_markup.inline_keyboard for b in row]
    assert LogCallback(kind="visit", id=app.customer_id).pack() in buttons
    # 1: pick the kind
    [prompt] = (await app.send(button_update(rep, LogCallback(kind="visit", id=app.customer_id).pack()))).sent()
    assert "Logging a visit with 广州市人易软件技术有限公司" in prompt.text
    # 2: the note
    [saved] = (await app.send(text_update(rep, "介绍新产品，采购经理有兴趣"))).sent()
    assert saved.text == "Saved: visit. When is the next step?"
    [logged] = await interactions(app)
    assert (logged.kind, logged.summary, logged.user_id is not None) == ("visit", "介绍新产品，采购经理有兴趣", True)
    async with app.sessions() as session:
        customer = await session.get(Customer, app.customer_id)
        assert customer.last_contact_at == logged.occurred_at  # the contact clock starts again
    # 3: the next step
    week = NextStepCallback(interaction=logged.id, days=7).pack()
    assert week in [b.callback_data for row in saved.reply_markup.inline_keyboard for b in row]
    [done] = (await app.send(button_update(rep, week))).sent()
    [logged] = await interactions(app)
    expected = datetime.now(ZoneInfo("Asia/Shanghai")).date() + timedelta(days=7)
    assert logged.next_step_on == expected and done.text.startswith("Next step on")


async def test_a_shared_location_is_a_check_in_and_a_photo_is_kept(app):
    rep = person(REP, language="en")
    await app.send(button_update(rep, LogCallback(kind="visit", id=app.customer_id).pack()))
    [saved] = (await app.send(location_update(rep, 23.1291, 113.2644))).sent()
    assert "checked in" in saved.text
    await app.send(button_update(rep, LogCallback(kind="call", id=app.customer_id).pack()))
    await app.send(photo_update(rep, caption="报价单"))
    visit, call = await interactions(app)
    assert (visit.latitude, visit.longitude) == (23.1291, 113.2644)
    assert (call.kind, call.summary, call.attachments) == ("call", "报价单", ["big-photo-id"])


async def test_a_typed_next_step_date_and_bad_dates_get_explained(app):
    rep = person(REP, language="en")
    await app.send(button_update(rep, LogCallback(kind="call", id=app.customer_id).pack()))
    await app.send(text_update(rep, "约了下次演示"))
    [logged] = await interactions(app)
    [ask] = (await app.send(button_update(rep, NextStepCallback(interaction=logged.id, days=-1).pack()))).sent()
    assert "明天" in ask.text
    [past] = (await app.send(text_update(rep, "2020-01-01"))).sent()
    assert "in the past" in past.text
    [sticker] = (await app.send(sticker_update(rep))).sent()
    assert "as text" in sticker.text
    [done] = (await app.send(text_update(rep, "明天"))).sent()
    [logged] = await interactions(app)
    assert logged.next_step_on == datetime.now(ZoneInfo("Asia/Shanghai")).date() + timedelta(days=1)
    assert done.text.startswith("Next step on")


async def test_cancel_anywhere_and_unexpected_input_saves_nothing(app):
    rep = person(REP, language="en")
    await app.send(button_update(rep, LogCallback(kind="visit", id=app.customer_id).pack()))
    [hint] = (await app.send(sticker_update(rep))).sent()
    assert "text, a photo or your location" in hint.text
    [hint] = (await app.send(text_update(rep, "/find 人易"))).sent()
    assert "/cancel" in hint.text
    [too_long] = (await app.send(text_update(rep, "长" * 5000))).sent()
    assert "too long" in too_long.text
    [cancelled] = (await app.send(text_update(rep, "取消"))).sent()
    assert cancelled.text.startswith("Cancelled")
    assert await interactions(app) == []
    # After cancelling, text is a search again.
    [card] = (await app.send(text_update(rep, "人易软件"))).sent()
    assert "广州市人易软件技术有限公司" in card.text
    [nothing] = (await app.send(text_update(rep, "/cancel"))).sent()
    assert "nothing to cancel" in nothing.text
    async with app.sessions() as session:
        assert await session.scalar(select(func.count(AuditLog.id)).where(AuditLog.entity == "interaction")) == 0


async def test_someone_elses_customer_cannot_be_logged_even_with_a_forged_button(app):
    async with app.sessions() as session:
        await add_user(session, name="别人", telegram_id=301, language="en")
        await session.commit()
    intruder = person(301, language="en")
    recorder = await app.send(button_update(intruder, LogCallback(kind="visit", id=app.customer_id).pack()))
    assert recorder.answers()[0].show_alert and not recorder.sent()
    [search] = (await app.send(text_update(intruder, "记录拜访"))).sent()  # not in a logging state
    assert "No customer matches" in search.text
    assert await interactions(app) == []
