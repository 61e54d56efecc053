"""/nearby lists the rep's customers around a shared location, overdue first; inline mode finds customers
from any chat, showing only what the user may see."""

from __future__ import annotations

from datetime import timedelta

import pytest
from aiogram.methods import AnswerInlineQuery, EditMessageText
from aiogram.types import ReplyKeyboardMarkup, ReplyKeyboardRemove
from sqlalchemy import select

from bot.callbacks import LogCallback
from models import ContactStrategy, Customer, utcnow
from services.access import Viewer
from services.customers import create_customer
from services.nearby import customers_near, distance_km
from services.users import add_user
from tests.botkit import button_update, inline_update, location_update, make_app, person, sticker_update, text_update

REP, OTHER, STRANGER = 6100, 6200, 6300
HERE = (23.1291, 113.2644)  # Guangzhou, Tianhe


@pytest.fixture
async def app(engine):
    app = await make_app(engine)
    async with app.sessions() as session:
        rep = await add_user(session, name="Lee", telegram_id=REP, language="en")
        other = await add_user(session, name="Wang", telegram_id=OTHER, language="en")
        weekly = await session.scalar(select(ContactStrategy).order_by(ContactStrategy.cycle_days))
        long_ago = utcnow() - timedelta(days=weekly.cycle_days + 10)
        near = await create_customer(session, name="天河近客户", owner_id=rep.id, latitude=23.1300, longitude=113.2650,
                                     contact_strategy_id=weekly.id)
        near.last_contact_at = utcnow()
        overdue = await create_customer(session, name="天河逾期客户", owner_id=rep.id, latitude=23.1400,
                                        longitude=113.2800, contact_strategy_id=weekly.id)
        overdue.last_contact_at = long_ago
        await create_customer(session, name="番禺远客户", owner_id=rep.id, latitude=22.9375, longitude=113.3840)
        await create_customer(session, name="天河别人的客户", owner_id=other.id, latitude=23.1295, longitude=113.2645)
        await create_customer(session, name="没有坐标的客户", owner_id=rep.id)
        await session.commit()
    await app.sync()
    app.rep_id = rep.id
    return app


rep = person(REP, language="en")


def names(message) -> list[str]:
    return [b.text for row in message.reply_markup.inline_keyboard for b in row]


async def test_nearby_asks_for_a_location_and_lists_overdue_first(app):
    [ask] = (await app.send(text_update(rep, "/nearby"))).sent()
    assert isinstance(ask.reply_markup, ReplyKeyboardMarkup)
    assert ask.reply_markup.keyboard[0][0].request_location
    [hint] = (await app.send(sticker_update(rep))).sent()
    assert "share a location" in hint.text
    looking, found = (await app.send(location_update(rep, *HERE))).sent()
    assert isinstance(looking.reply_markup, ReplyKeyboardRemove)
    assert names(found)[:2] == ["⏰ 天河逾期客户", "📇 天河近客户"]
    assert "overdue" in found.text.splitlines()[1] and "天河别人的客户" not in found.text
    assert "番禺远客户" not in found.text and "within 20 km" in names(found)
    fifty = next(b for b in found.reply_markup.inline_keyboard[-1] if b.text == "within 50 km")
    recorder = await app.send(button_update(rep, fifty.callback_data, on=found))  # Panyu is ~23 km away
    [wider] = [r for r in recorder.requests if isinstance(r, EditMessageText)]
    assert "番禺远客户" in wider.text and "天河别人的客户" not in wider.text


async def test_a_location_outside_any_conversation_is_a_nearby_search(app):
    _, found = (await app.send(location_update(rep, *HERE))).sent()
    assert "天河近客户" in found.text


async def test_a_first_check_in_gives_the_customer_its_coordinates(app):
    async with app.sessions() as session:
        customer = await session.scalar(select(Customer).where(Customer.name == "没有坐标的客户"))
    await app.send(button_update(rep, LogCallback(kind="visit", id=customer.id).pack()))
    await app.send(location_update(rep, 23.1310, 113.2660))
    _, found = (await app.send(location_update(rep, *HERE))).sent()
    assert "没有坐标的客户" in found.text


async def test_nothing_nearby_is_said_plainly(app):
    _, found = (await app.send(location_update(rep, 39.9042, 116.4074))).sent()  # Beijing
    assert "None of your customers within 5 km" in found.text


def test_distance_is_great_circle():
    assert distance_km(23.1291, 113.2644, 22.5431, 114.0579) == pytest.approx(104.5, abs=1.5)  # Guangzhou–Shenzhen
    assert distance_km(0, 179.99, 0, -179.99) < 3  # across the date line


async def test_nearby_across_the_date_line(session):
    await create_customer(session, name="Fiji", latitude=-17.0, longitude=-179.99)
    [found] = await customers_near(session, Viewer.everyone(), -17.0, 179.99, radius_km=5)
    assert found.name == "Fiji" and found.distance_km < 3


async def test_inline_mode_finds_only_visible_customers(app):
    recorder = await app.send(inline_update(rep, "天河"))
    [answer] = [r for r in recorder.requests if isinstance(r, AnswerInlineQuery)]
    titles = {r.title for r in answer.results}
    assert {"天河近客户", "天河逾期客户"} <= titles and "天河别人的客户" not in titles
    assert answer.is_personal and answer.cache_time == 0
    card = next(r for r in answer.results if r.title == "天河近客户").input_message_content.message_text
    assert card.startswith("<b>天河近客户</b>") and "Owner: Lee" in card
    recorder = await app.send(inline_update(person(OTHER, language="en"), "天河"))
    [answer] = [r for r in recorder.requests if isinstance(r, AnswerInlineQuery)]
    assert {r.title for r in answer.results} == {"天河别人的客户"}


async def test_inline_mode_gives_strangers_nothing(app):
    recorder = await app.send(inline_update(person(STRANGER, language="en"), "天河"))
    [answer] = [r for r in recorder.requests if isinstance(r, AnswerInlineQuery)]
    assert answer.results == []
    recorder = await app.send(inline_update(rep, ""))
    [answer] = [r for r in recorder.requests if isinstance(r, AnswerInlineQuery)]
    assert answer.results == []


@pytest.mark.parametrize("chat_type, shown", [("sender", "13812345678"), ("private", "13812345678"),
                                              ("group", "138****5678"), ("supergroup", "138****5678"),
                                              ("channel", "138****5678"), (None, "138****5678")])
async def test_a_card_posted_into_a_group_masks_the_phone(app, chat_type, shown):
    async with app.sessions() as session:
        await create_customer(session, name="天河电话客户", owner_id=app.rep_id, phone="13812345678")
        await session.commit()
    await app.sync()
    recorder = await app.send(inline_update(rep, "天河电话", chat_type=chat_type))
    [answer] = [r for r in recorder.requests if isinstance(r, AnswerInlineQuery)]
    result = next(r for r in answer.results if r.title == "天河电话客户")
    assert shown in result.input_message_content.message_text and shown in result.description
    if "*" in shown:
        assert "13812345678" not in result.input_message_content.message_text + result.description


@pytest.mark.parametrize("phone, masked", [("13812345678", "138****5678"), ("+86 138-1234-5678", "+86 1**-****-5678"),
                                           ("020-88886666", "020-****6666"), ("110", "*10"), ("", "")])
def test_phone_masking_keeps_the_writing_and_hides_the_middle(phone, masked):
    from services.privacy import mask_phone

    assert mask_phone(phone) == masked
