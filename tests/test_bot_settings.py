"""A rep sets their own time zone, working hours and work days; reminders follow them."""

from __future__ import annotations

from datetime import time

import pytest
from aiogram.methods import EditMessageText
from sqlalchemy import select

from bot.callbacks import SettingsCallback
from models import AuditLog, User
from services.messages import DomainError
from services.users import add_user, check_timezone, parse_working_hours
from tests.botkit import button_update, make_app, person, sticker_update, text_update

REP = 4100


@pytest.fixture
async def app(engine):
    app = await make_app(engine)
    async with app.sessions() as session:
        await add_user(session, name="Lee", telegram_id=REP, language="en", timezone="Asia/Shanghai")
        await session.commit()
    return app


async def me(app) -> User:
    async with app.sessions() as session:
        return await session.scalar(select(User).where(User.telegram_id == REP))


def tap(data: SettingsCallback, on=None):
    return button_update(person(REP, language="en"), data.pack(), on=on)


async def test_settings_show_what_reminders_follow(app):
    [shown] = (await app.send(text_update(person(REP, language="en"), "/settings"))).sent()
    assert "Time zone: Asia/Shanghai (UTC+08:00)" in shown.text
    assert "Working hours: 09:00–18:00" in shown.text
    assert "Work days: Mon Tue Wed Thu Fri" in shown.text
    days = [b.text for row in shown.reply_markup.inline_keyboard[1:3] for b in row]
    assert days == ["✅Mon", "✅Tue", "✅Wed", "✅Thu", "✅Fri", "▫️Sat", "▫️Sun"]
    assert [b.text for b in shown.reply_markup.inline_keyboard[3]] == ["🗺 Map app", "⏱ Visit length"]
    assert "Visit length for /route: 30 min (the team's default)" in shown.text


async def test_pick_a_time_zone_from_buttons_or_type_one(app):
    [shown] = (await app.send(text_update(person(REP, language="en"), "/settings"))).sent()
    [zones] = (await app.send(tap(SettingsCallback(action="tz"), on=shown))).sent()
    ny = next(b for row in zones.reply_markup.inline_keyboard for b in row if b.text.startswith("America/New_York"))
    [done] = (await app.send(button_update(person(REP, language="en"), ny.callback_data, on=zones))).sent()
    assert done.text == "Time zone set: America/New_York."
    assert (await me(app)).timezone == "America/New_York"

    await app.send(tap(SettingsCallback(action="tz_other")))
    [wrong] = (await app.send(text_update(person(REP, language="en"), "Mars/Olympus"))).sent()
    assert "“Mars/Olympus” is not a time zone" in wrong.text and "Try again" in wrong.text
    [huge] = (await app.send(text_update(person(REP, language="en"), "x" * 5000))).sent()
    assert "is not a time zone" in huge.text and len(huge.text) < 200
    assert (await me(app)).timezone == "America/New_York"
    [ok] = (await app.send(text_update(person(REP, language="en"), "europe/paris"))).sent()
    assert ok.text == "Time zone set: Europe/Paris."
    assert (await me(app)).timezone == "Europe/Paris"
    async with app.sessions() as session:
        changes = (await session.execute(select(AuditLog.changes).where(AuditLog.entity == "user",
                                                                       AuditLog.action == "update"))).scalars()
        assert [c["timezone"] for c in changes] == [["Asia/Shanghai", "America/New_York"],
                                                    ["America/New_York", "Europe/Paris"]]


async def test_working_hours_are_typed_and_checked(app):
    await app.send(tap(SettingsCallback(action="hours")))
    for bad in ("18-9", "9", "25-26", "9:00-9:30"):
        [reply] = (await app.send(text_update(person(REP, language="en"), bad))).sent()
        assert "Try again" in reply.text, bad
    [sticker] = (await app.send(sticker_update(person(REP, language="en")))).sent()
    assert "answer with text" in sticker.text
    assert (await me(app)).work_start == time(9, 0)
    [ok] = (await app.send(text_update(person(REP, language="en"), "8:30~17:30"))).sent()
    assert ok.text == "Working hours set: 08:30–17:30."
    user = await me(app)
    assert (user.work_start, user.work_end) == (time(8, 30), time(17, 30))
    # Out of the conversation: plain text is a search again.
    [search] = (await app.send(text_update(person(REP, language="en"), "9-18"))).sent()
    assert "No customer matches" in search.text


async def test_cancel_leaves_the_time_zone_alone(app):
    await app.send(tap(SettingsCallback(action="tz_other")))
    [cancelled] = (await app.send(text_update(person(REP, language="en"), "/cancel"))).sent()
    assert cancelled.text.startswith("Cancelled")
    assert (await me(app)).timezone == "Asia/Shanghai"


async def test_work_days_toggle_in_place_and_one_must_stay(app):
    [shown] = (await app.send(text_update(person(REP, language="en"), "/settings"))).sent()
    recorder = await app.send(tap(SettingsCallback(action="day", value="6"), on=shown))
    [edit] = [r for r in recorder.requests if isinstance(r, EditMessageText)]
    assert "Work days: Mon Tue Wed Thu Fri Sat" in edit.text
    assert (await me(app)).work_days == "123456"
    for day in "123456":
        await app.send(tap(SettingsCallback(action="day", value=day)))
    assert (await me(app)).work_days == "6"
    [refused] = (await app.send(tap(SettingsCallback(action="day", value="6")))).answers()
    assert refused.show_alert and "at least one work day" in refused.text
    assert (await me(app)).work_days == "6"
    [bad] = (await app.send(tap(SettingsCallback(action="day", value="9")))).answers()
    assert bad.show_alert and (await me(app)).work_days == "6"


async def test_settings_speak_the_users_language(app):
    async with app.sessions() as session:
        await add_user(session, name="小王", telegram_id=4200, language="zh_Hans")
        await session.commit()
    [shown] = (await app.send(text_update(person(4200), "/settings"))).sent()
    assert "时区：Asia/Shanghai" in shown.text and "周一" in shown.text


@pytest.mark.parametrize("text, expected", [
    ("9-18", (time(9), time(18))), ("09:00-18:00", (time(9), time(18))), ("8:30 ~ 17:30", (time(8, 30), time(17, 30))),
    ("9点到18点", (time(9), time(18))), ("10：00至22：00", (time(10), time(22))), ("0-24", (time(0), time(23, 59))),
])
def test_working_hours_formats(text, expected):
    assert parse_working_hours(text) == expected


def test_time_zone_names_are_canonical():
    assert check_timezone("asia/shanghai") == "Asia/Shanghai"
    with pytest.raises(DomainError):
        check_timezone("UTC+8")
