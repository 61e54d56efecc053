"""A rep records an order from the card; the customer's totals follow at once."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from bot.callbacks import OrderCallback
from models import Customer, Purchase, Stage
from services.customers import create_customer
from services.users import add_user
from tests.botkit import button_update, make_app, person, sticker_update, text_update

REP = 400


@pytest.fixture
async def app(engine):
    app = await make_app(engine)
    async with app.sessions() as session:
        rep = await add_user(session, name="王业务", telegram_id=REP, language="zh_Hans")
        customer = await create_customer(session, name="上海恒达物流股份有限公司", short_name="恒达物流", owner_id=rep.id)
        await session.commit()
    await app.sync()
    app.customer_id = customer.id
    return app


async def purchases(app):
    async with app.sessions() as session:
        return list((await session.execute(select(Purchase))).scalars())


def shanghai_today():
    return datetime.now(ZoneInfo("Asia/Shanghai")).date()


async def test_an_order_in_chinese_amount_format_updates_the_customer(app):
    rep = person(REP)
    [card] = (await app.send(text_update(rep, "恒达物流"))).sent()
    start = OrderCallback(step="start", id=app.customer_id).pack()
    assert start in [b.callback_data for row in card.reply_markup.inline_keyboard for b in row]
    await app.send(button_update(rep, start))
    [what] = (await app.send(text_update(rep, "１.２万元"))).sent()
    assert what.text == "订购了什么？"
    [when] = (await app.send(text_update(rep, "服务器 2 台"))).sent()
    assert "3.15" in when.text
    [saved] = (await app.send(button_update(rep, OrderCallback(step="day", days_ago=1).pack()))).sent()
    assert "金额 ¥12,000.00" in saved.text and saved.text.endswith("恒达物流目前共 1 笔订单，合计 ¥12,000.00。")
    [order] = await purchases(app)
    assert (order.amount_cents, order.products, order.purchased_on) == (1_200_000, "服务器 2 台",
                                                                        shanghai_today() - timedelta(days=1))
    async with app.sessions() as session:
        customer = await session.get(Customer, app.customer_id)
        assert (customer.txn_count, customer.txn_amount_cents, customer.stage) == (1, 1_200_000, Stage.customer)


async def test_typed_dates_skipping_products_and_bad_input_at_every_step(app):
    rep = person(REP, language="en")
    async with app.sessions() as session:
        from models import User
        user = (await session.execute(select(User).where(User.telegram_id == REP))).scalar_one()
        user.language = "en"
        await session.commit()
    await app.send(button_update(rep, OrderCallback(step="start", id=app.customer_id).pack()))
    for bad, why in (("abc", "not an amount"), ("-5", "negative"), ("0", "above zero")):
        [reply] = (await app.send(text_update(rep, bad))).sent()
        assert why in reply.text
    [reply] = (await app.send(sticker_update(rep))).sent()
    assert "answer with text" in reply.text
    await app.send(text_update(rep, "8,800.50"))
    await app.send(button_update(rep, OrderCallback(step="skip_products").pack()))
    [future] = (await app.send(text_update(rep, (shanghai_today() + timedelta(days=3)).isoformat()))).sent()
    assert "future" in future.text
    [nonsense] = (await app.send(text_update(rep, "2026-02-30"))).sent()
    assert "real calendar date" in nonsense.text
    assert await purchases(app) == []
    [saved] = (await app.send(text_update(rep, "2026-03-15"))).sent()
    assert saved.text.startswith("Saved: order of CN¥8,800.50 on Mar 15, 2026")
    [order] = await purchases(app)
    assert (order.amount_cents, order.products) == (880_050, None)
    # The day buttons of a finished order do nothing any more.
    stale = await app.send(button_update(rep, OrderCallback(step="day", days_ago=0).pack()))
    assert not stale.sent() and len(await purchases(app)) == 1
