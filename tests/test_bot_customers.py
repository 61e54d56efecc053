"""A rep creates a customer by guided steps (duplicates caught), edits it, sets its relationship stage,
manages its contact persons and reads its history — all from the card."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from aiogram.methods import EditMessageText
from sqlalchemy import func, select

from bot.callbacks import (
    ContactCallback,
    CustomerCallback,
    EditCallback,
    HistoryCallback,
    NewCustomerCallback,
    StageCallback,
)
from models import AuditLog, ContactPerson, ContactStrategy, Customer, DictionaryEntry, Stage
from services.customers import create_customer
from services.feedback import record_feedback
from services.interactions import log_interaction
from services.purchases import record_purchase
from services.users import add_user
from tests.botkit import button_update, make_app, person, sticker_update, text_update

REP, OTHER = 5100, 5200


@pytest.fixture
async def app(engine):
    app = await make_app(engine)
    async with app.sessions() as session:
        rep = await add_user(session, name="Lee", telegram_id=REP, language="en")
        other = await add_user(session, name="Wang", telegram_id=OTHER, language="en")
        mine = await create_customer(session, name="广州市人易软件技术有限公司", short_name="人易软件", owner_id=rep.id,
                                     phone="020-8888 1234")
        theirs = await create_customer(session, name="深圳华为技术有限公司", owner_id=other.id, phone="0755-2878 0808")
        await session.commit()
    await app.sync()
    app.mine, app.theirs, app.rep_id = mine.id, theirs.id, rep.id
    return app


def buttons(message) -> dict[str, str]:
    return {b.text: b.callback_data for row in message.reply_markup.inline_keyboard for b in row}


async def customers(app, **where) -> list[Customer]:
    async with app.sessions() as session:
        query = select(Customer).order_by(Customer.id)
        for key, value in where.items():
            query = query.where(getattr(Customer, key) == value)
        return list((await session.execute(query)).scalars())


rep = person(REP, language="en")


async def test_no_match_offers_to_create_and_the_steps_end_on_the_new_card(app):
    [none] = (await app.send(text_update(rep, "佛山顺德美的电器"))).sent()
    assert "No customer matches" in none.text
    [ask_phone] = (await app.send(button_update(rep, buttons(none)["➕ New customer “佛山顺德美的电器”"]))).sent()
    assert "main phone number" in ask_phone.text
    [bad] = (await app.send(text_update(rep, "call me"))).sent()
    assert "does not look like a phone number" in bad.text
    [regions] = (await app.send(text_update(rep, "0757-2233 4455"))).sent()
    assert "South China" in buttons(regions)
    [stages] = (await app.send(button_update(rep, buttons(regions)["South China"], on=regions))).sent()
    [cycle] = (await app.send(button_update(rep, buttons(stages)["interested"], on=stages))).sent()
    [first, *_] = [text for text in buttons(cycle) if text != "Skip"]
    recorder = await app.send(button_update(rep, buttons(cycle)[first], on=cycle))
    created, card = recorder.sent()
    assert created.text.startswith("Created.")
    assert card.text.startswith("<b>佛山顺德美的电器</b>") and "Stage: interested" in card.text
    [new] = await customers(app, name="佛山顺德美的电器")
    async with app.sessions() as session:
        region = await session.get(DictionaryEntry, new.region_id)
        strategy = await session.get(ContactStrategy, new.contact_strategy_id)
    assert (new.owner_id, new.phone, region.code, new.stage) == (app.rep_id, "0757-2233 4455", "south", "interested")
    assert strategy.label("en") == first
    # The new customer is found straight away.
    [found] = (await app.send(text_update(rep, "美的电器"))).sent()
    assert found.text.startswith("<b>佛山顺德美的电器</b>")


async def test_a_near_identical_name_asks_is_it_this_one(app):
    [question] = (await app.send(text_update(rep, "/new 广州人易软件有限公司"))).sent()
    assert "Is it one of these?" in question.text
    assert buttons(question)["📇 广州市人易软件技术有限公司"] == CustomerCallback(action="card", id=app.mine).pack()
    # Yes, it is that one: the card opens, nothing is created.
    [card] = (await app.send(button_update(rep, buttons(question)["📇 广州市人易软件技术有限公司"]))).sent()
    assert card.text.startswith("<b>广州市人易软件技术有限公司</b>")
    assert len(await customers(app)) == 2


async def test_a_colleagues_similar_customer_is_flagged_without_showing_it(app):
    [question] = (await app.send(text_update(rep, "/new 华为技术"))).sent()
    assert "belong to colleagues" in question.text and "华为" not in "".join(buttons(question))
    [ask_phone] = (await app.send(button_update(rep, buttons(question)["➕ No, it is a new customer"]))).sent()
    assert "main phone number" in ask_phone.text
    # The same phone as an existing customer (written differently) is caught too.
    [again] = (await app.send(text_update(rep, "+86 20 8888 1234"))).sent()
    assert "already in the CRM" in again.text and "📇 广州市人易软件技术有限公司" in buttons(again)
    [regions] = (await app.send(button_update(rep, buttons(again)["➕ No, it is a new customer"]))).sent()
    assert "Which region?" in regions.text


async def test_unexpected_input_and_cancel_while_creating_save_nothing(app):
    await app.send(text_update(rep, "/new"))
    [hint] = (await app.send(sticker_update(rep))).sent()
    assert "answer with text" in hint.text
    [long] = (await app.send(text_update(rep, "名" * 300))).sent()
    assert "1 to 200 characters" in long.text
    [ask_phone] = (await app.send(text_update(rep, "东莞新客户"))).sent()
    [regions] = (await app.send(button_update(rep, buttons(ask_phone)["Skip"]))).sent()
    [hint] = (await app.send(text_update(rep, "华南"))).sent()
    assert "tap one of the buttons" in hint.text
    # A stale button from another step does nothing.
    [] = (await app.send(button_update(rep, NewCustomerCallback(step="strategy", value="1").pack()))).sent()
    await app.send(text_update(rep, "/cancel"))
    # After cancelling, the region button of the abandoned flow does nothing.
    [] = (await app.send(button_update(rep, buttons(regions)["South China"]))).sent()
    assert len(await customers(app)) == 2
    async with app.sessions() as session:
        assert await session.scalar(select(func.count(AuditLog.id)).where(AuditLog.action == "create",
                                                                          AuditLog.entity == "customer")) == 2


async def test_edit_a_text_field_and_a_dictionary_field(app):
    [menu] = (await app.send(button_update(rep, EditCallback(id=app.mine).pack()))).sent()
    [ask] = (await app.send(button_update(rep, buttons(menu)["Address"]))).sent()
    assert "Address now: —" in ask.text
    [too_long] = (await app.send(text_update(rep, "路" * 400))).sent()
    assert "too long" in too_long.text
    saved, card = (await app.send(text_update(rep, "广州市天河区体育西路 1 号"))).sent()
    assert saved.text == "Saved." and card.text.startswith("<b>广州市人易软件技术有限公司</b>")
    [scales] = (await app.send(button_update(rep, buttons(menu)["Scale"]))).sent()
    choice = next(text for text in buttons(scales) if text != "(none)")
    await app.send(button_update(rep, buttons(scales)[choice]))
    [customer] = await customers(app, id=app.mine)
    assert customer.address == "广州市天河区体育西路 1 号" and customer.scale_id is not None
    # Clearing the name is refused, and changes nothing.
    await app.send(button_update(rep, buttons(menu)["Name"]))
    [refused] = (await app.send(text_update(rep, "   "))).sent()
    assert "needs a name" in refused.text
    [customer] = await customers(app, id=app.mine)
    assert customer.name == "广州市人易软件技术有限公司"


async def test_nobody_edits_a_customer_they_cannot_see(app):
    for data in (EditCallback(id=app.theirs).pack(), EditCallback(id=app.theirs, field="scale", value="1").pack(),
                 StageCallback(id=app.theirs, stage="hesitating").pack(), ContactCallback(step="add", id=app.theirs)
                 .pack(), ContactCallback(step="list", id=app.theirs).pack()):
        recorder = await app.send(button_update(rep, data))
        assert recorder.sent() == [] and recorder.answers()[0].show_alert, data
    [theirs] = await customers(app, id=app.theirs)
    assert (theirs.stage, theirs.scale_id) == ("interested", None)


async def test_relationship_stage_asks_what_each_stage_needs(app):
    [stages] = (await app.send(button_update(rep, StageCallback(id=app.mine).pack()))).sent()
    assert "Stage of 广州市人易软件技术有限公司: interested" in stages.text and "Act fast" in stages.text
    [ask_date] = (await app.send(button_update(rep, buttons(stages)["not buying now"]))).sent()
    assert "When do they expect to buy?" in ask_date.text
    [past] = (await app.send(text_update(rep, "2020-01-01"))).sent()
    assert "Try again" in past.text
    [done] = (await app.send(text_update(rep, "2099-09-01"))).sent()
    assert "Stage set: not buying now." in done.text
    [customer] = await customers(app, id=app.mine)
    assert (customer.stage, customer.expected_purchase_on) == (Stage.not_now, date(2099, 9, 1))

    [ask_reason] = (await app.send(button_update(rep, buttons(stages)["definitely not buying"]))).sent()
    assert "Why will they not buy?" in ask_reason.text
    [done] = (await app.send(text_update(rep, "价格太高，选了竞品"))).sent()
    assert "product development" in done.text
    [customer] = await customers(app, id=app.mine)
    assert (customer.stage, customer.lost_reason, customer.expected_purchase_on) == \
        (Stage.definitely_not, "价格太高，选了竞品", None)

    [done] = (await app.send(button_update(rep, buttons(stages)["hesitating"]))).sent()
    assert "Stage set: hesitating." in done.text and "do not push" in done.text
    [customer] = await customers(app, id=app.mine)
    assert (customer.stage, customer.lost_reason) == (Stage.hesitating, None)


async def test_contacts_are_added_with_a_duplicate_check_and_marked_key(app):
    [listing] = (await app.send(button_update(rep, ContactCallback(step="list", id=app.mine).pack()))).sent()
    assert "No contact persons yet." in listing.text
    await app.send(button_update(rep, buttons(listing)["➕ Add a contact person"]))
    [ask_title] = (await app.send(text_update(rep, "王小明"))).sent()
    [ask_mobile] = (await app.send(text_update(rep, "采购经理"))).sent()
    saved, listing = (await app.send(text_update(rep, "138 0013 8000"))).sent()
    assert "王小明 · 采购经理 · 138 0013 8000" in saved.text
    # A second person with the same mobile: "is it this one?"
    await app.send(button_update(rep, buttons(listing)["➕ Add a contact person"]))
    await app.send(text_update(rep, "小明"))
    [ask_mobile] = (await app.send(button_update(rep, ContactCallback(step="skip").pack()))).sent()
    [question] = (await app.send(text_update(rep, "+86 13800138000"))).sent()
    assert "Is it this one?" in question.text and "王小明" in question.text
    await app.send(button_update(rep, buttons(question)["Yes — do not add"]))
    async with app.sessions() as session:
        people = list((await session.execute(select(ContactPerson))).scalars())
    assert [p.name for p in people] == ["王小明"]
    # Mark as key contact; the card lists key contacts first and the lookup finds the customer by them.
    recorder = await app.send(button_update(rep, ContactCallback(step="key", id=people[0].id).pack()))
    assert "key contact now" in recorder.answers()[0].text
    [found] = (await app.send(text_update(rep, "王小明"))).sent()
    assert "👤 王小明 · 采购经理 · 138 0013 8000" in found.text


async def test_history_pages_through_contacts_orders_and_feedback(app):
    now = datetime.now(UTC)
    async with app.sessions() as session:
        for n in range(10):
            await log_interaction(session, customer_id=app.mine, kind="call", user_id=app.rep_id,
                                  occurred_at=now - timedelta(days=n + 1), summary=f"通话 {n}")
        today = now.astimezone(ZoneInfo("Asia/Shanghai")).date()
        await record_purchase(session, customer_id=app.mine, purchased_on=today, amount_cents=1_250_000,
                              products="软件授权", user_id=app.rep_id, today=today)
        await record_feedback(session, customer_id=app.mine, kind="complaint", text="发货慢", rating=2,
                              user_id=app.rep_id)
        await session.commit()
    [first] = (await app.send(text_update(rep, "/history 人易软件"))).sent()
    assert "history, page 1 of 2" in first.text
    assert "order CN¥12,500.00" in first.text and "软件授权" in first.text
    assert "complaint (open) ★★" in first.text and "发货慢" in first.text
    assert "通话 0" in first.text and "通话 9" not in first.text
    recorder = await app.send(button_update(rep, buttons(first)["Older ▶"], on=first))
    [second] = [r for r in recorder.requests if isinstance(r, EditMessageText)]
    assert "page 2 of 2" in second.text and "通话 9" in second.text and "◀ Newer" in buttons(second)
    assert "Older ▶" not in buttons(second)
    # A page past the end shows the last page; a colleague's customer has no history for this rep.
    recorder = await app.send(button_update(rep, HistoryCallback(id=app.mine, page=99).pack()))
    assert "page 2 of 2" in [r for r in recorder.requests if isinstance(r, EditMessageText)][0].text
    recorder = await app.send(button_update(rep, HistoryCallback(id=app.theirs, new=True).pack()))
    assert recorder.sent() == [] and recorder.answers()[0].show_alert
    [none] = (await app.send(text_update(rep, "/history 华为"))).sent()
    assert "No customer matches" in none.text


async def test_the_card_has_every_action(app):
    [card] = (await app.send(text_update(rep, "人易软件"))).sent()
    assert {"📍 Log visit", "📞 Log call", "🧾 Record order", "💬 Feedback", "📜 History", "👥 Contacts", "🎯 Stage",
            "✏️ Edit"} <= set(buttons(card))
    [history] = (await app.send(button_update(rep, buttons(card)["📜 History"]))).sent()
    assert "Nothing recorded yet" in history.text


async def test_a_contact_is_edited_and_archived(app):
    async with app.sessions() as session:
        from services.access import Viewer
        from services.contacts import add_contact

        person_id = (await add_contact(session, Viewer.everyone(), app.mine, name="王小明", mobile="13800138000")).id
        await session.commit()
    [menu] = (await app.send(button_update(rep, ContactCallback(step="edit", id=person_id).pack()))).sent()
    assert set(buttons(menu)) == {"Name", "Title", "Mobile", "Birthday", "🗄 Archive"}
    [ask] = (await app.send(button_update(rep, buttons(menu)["Birthday"]))).sent()
    assert "Birthday now: —" in ask.text
    [future] = (await app.send(text_update(rep, "2099-01-01"))).sent()
    assert "cannot be in the future" in future.text
    [garbage] = (await app.send(text_update(rep, "生日快乐"))).sent()
    assert "Try again" in garbage.text
    saved, _listing = (await app.send(text_update(rep, "1985-03-15"))).sent()
    assert saved.text.startswith("Saved:")
    await app.send(button_update(rep, buttons(menu)["Title"]))
    await app.send(text_update(rep, "总经理"))
    async with app.sessions() as session:
        contact = await session.get(ContactPerson, person_id)
        assert (contact.birthday, contact.birthday_mmdd, contact.title) == (date(1985, 3, 15), 315, "总经理")
    [card] = (await app.send(text_update(rep, "人易软件"))).sent()
    assert "王小明 · 总经理 · 13800138000 · birthday" in card.text
    # A colleague cannot touch it through a forged button.
    for step in ("edit", "archive", "key"):
        recorder = await app.send(button_update(person(OTHER, language="en"),
                                                ContactCallback(step=step, id=person_id, field="yes").pack()))
        assert recorder.sent() == [] and recorder.answers()[0].show_alert
    # Archive asks first, then the person leaves the card and the search, but is kept.
    [confirm] = (await app.send(button_update(rep, buttons(menu)["🗄 Archive"]))).sent()
    assert "Archive 王小明?" in confirm.text
    await app.send(button_update(rep, buttons(confirm)["🗄 Archive"]))
    [card] = (await app.send(text_update(rep, "人易软件"))).sent()
    assert "王小明" not in card.text
    [none] = (await app.send(text_update(rep, "王小明"))).sent()
    assert "No customer matches" in none.text
    async with app.sessions() as session:
        assert (await session.get(ContactPerson, person_id)).archived_at is not None
