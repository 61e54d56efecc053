"""A rep records what a customer said; complaints stay open on the card until resolved."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from bot.callbacks import FeedbackCallback
from models import Feedback
from services.customers import create_customer
from services.feedback import record_feedback, resolve_complaint
from services.messages import DomainError
from services.users import add_user
from tests.botkit import button_update, make_app, person, sticker_update, text_update

REP = 500


@pytest.fixture
async def app(engine):
    app = await make_app(engine)
    async with app.sessions() as session:
        rep = await add_user(session, name="Sam", telegram_id=REP, language="en")
        customer = await create_customer(session, name="Acme Trading Co., Ltd.", short_name="Acme", owner_id=rep.id)
        await session.commit()
    await app.sync()
    app.customer_id = customer.id
    return app


async def feedback(app):
    async with app.sessions() as session:
        return list((await session.execute(select(Feedback).order_by(Feedback.id))).scalars())


async def test_a_complaint_is_recorded_shown_on_the_card_and_resolved(app):
    rep = person(REP, language="en")
    [card] = (await app.send(text_update(rep, "acme"))).sent()
    assert FeedbackCallback(step="start", id=app.customer_id).pack() in [
        b.callback_data for row in card.reply_markup.inline_keyboard for b in row]
    await app.send(button_update(rep, FeedbackCallback(step="start", id=app.customer_id).pack()))
    [hint] = (await app.send(text_update(rep, "complaint please"))).sent()
    assert "tap one of the buttons" in hint.text
    await app.send(button_update(rep, FeedbackCallback(step="kind", value="complaint").pack()))
    await app.send(text_update(rep, "打印机"))
    await app.send(button_update(rep, FeedbackCallback(step="rating", value="2").pack()))
    [saved] = (await app.send(text_update(rep, "Delivery was a week late"))).sent()
    assert saved.text.startswith("Complaint saved")
    [complaint] = await feedback(app)
    assert (complaint.kind, complaint.product, complaint.rating, complaint.status) == ("complaint", "打印机", 2, "open")

    [card] = (await app.send(text_update(rep, "acme"))).sent()
    assert "Open complaints: 1" in card.text and "Delivery was a week late" in card.text
    resolve = FeedbackCallback(step="resolve", id=complaint.id).pack()
    assert resolve in [b.callback_data for row in card.reply_markup.inline_keyboard for b in row]
    await app.send(button_update(rep, resolve))
    [done] = (await app.send(text_update(rep, "Refunded the shipping fee"))).sent()
    assert done.text.startswith("Complaint resolved after")
    [complaint] = await feedback(app)
    assert complaint.status == "resolved" and complaint.resolution == "Refunded the shipping fee"
    assert complaint.resolved_at >= complaint.created_at
    again = await app.send(button_update(rep, resolve))  # a stale button
    assert again.answers()[0].show_alert and not again.sent()
    [card] = (await app.send(text_update(rep, "acme"))).sent()
    assert "Open complaints" not in card.text


async def test_praise_without_product_or_rating_is_handled_at_once(app):
    rep = person(REP, language="en")
    await app.send(button_update(rep, FeedbackCallback(step="start", id=app.customer_id).pack()))
    await app.send(button_update(rep, FeedbackCallback(step="kind", value="praise").pack()))
    await app.send(button_update(rep, FeedbackCallback(step="skip_product").pack()))
    [sticker] = (await app.send(sticker_update(rep))).sent()
    assert "tap one of the buttons" in sticker.text
    await app.send(button_update(rep, FeedbackCallback(step="rating", value="0").pack()))
    [saved] = (await app.send(text_update(rep, "Installation team was great"))).sent()
    assert saved.text == "Saved: praise."
    [praise] = await feedback(app)
    assert (praise.product, praise.rating, praise.status) == (None, None, "resolved")


async def test_forged_buttons_change_nothing(app):
    rep = person(REP, language="en")
    await app.send(button_update(rep, FeedbackCallback(step="start", id=app.customer_id).pack()))
    for forged in ("fb:kind:0:bribe", "fb:rating:0:9", "fb:rating:0:"):  # cannot even be packed any more
        answer = (await app.send(button_update(rep, forged))).answers()[0]
        assert answer.show_alert or forged == "fb:rating:0:"  # "" is a valid value, ignored outside the rating step
    assert await feedback(app) == []
    other = person(501, language="en")
    async with app.sessions() as session:
        await add_user(session, name="Other", telegram_id=501, language="en")
        await session.commit()
    denied = await app.send(button_update(other, FeedbackCallback(step="start", id=app.customer_id).pack()))
    assert denied.answers()[0].show_alert


async def test_feedback_rules(session):
    customer = await create_customer(session, name="规则测试有限公司")
    with pytest.raises(DomainError):
        await record_feedback(session, customer_id=customer.id, kind="complaint", text="  ")
    with pytest.raises(DomainError):
        await record_feedback(session, customer_id=customer.id, kind="praise", text="ok", rating=6)
    with pytest.raises(DomainError):
        await record_feedback(session, customer_id=customer.id, kind="rumour", text="x")
    complaint = await record_feedback(session, customer_id=customer.id, kind="complaint", text="坏了")
    with pytest.raises(DomainError):
        await resolve_complaint(session, complaint.id, resolution=" ")
    await resolve_complaint(session, complaint.id, resolution="换货")
    with pytest.raises(DomainError):
        await resolve_complaint(session, complaint.id, resolution="again")
