"""Nobody sees data until let in; reps find their customers by typing; each in their own language."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from bot.callbacks import CustomerCallback
from models import Invite, Role, User, utcnow
from services.customers import create_customer
from services.users import add_user
from tests.botkit import button_update, make_app, person, sticker_update, text_update

ADMIN_TG = 900001


@pytest.fixture
async def app(engine):
    return await make_app(engine, admin_ids=[ADMIN_TG])


async def test_a_stranger_is_asked_to_see_the_admin_and_sees_nothing(app):
    async with app.sessions() as session:
        await create_customer(session, name="广州市人易软件技术有限公司", short_name="人易软件")
        await session.commit()
    stranger = person(555, language="en")
    for update in (text_update(stranger, "/start"), text_update(stranger, "人易"), sticker_update(stranger)):
        [reply] = (await app.send(update)).sent()
        assert "ask your admin" in reply.text and "555" in reply.text and "人易" not in reply.text
    reply = (await app.send(button_update(stranger, CustomerCallback(action="card", id=1).pack()))).answers()
    assert reply and reply[0].show_alert and "invitation" in reply[0].text
    async with app.sessions() as session:
        assert await session.scalar(select(func.count(User.id))) == 0


async def test_the_configured_admin_gets_in_and_invites_a_rep_who_then_gets_in_once(app):
    admin = person(ADMIN_TG, "Alice", language="en")
    [welcome] = (await app.send(text_update(admin, "/start"))).sent()
    assert welcome.text.startswith("Welcome, Alice!")
    [invitation] = (await app.send(text_update(admin, "/invite rep"))).sent()
    code = re.search(r"start=([\w-]+)", invitation.text)[1]
    assert "https://t.me/fieldcrm_test_bot?start=" in invitation.text

    rep = person(777, "小李", language="zh-hans")
    [greeting] = (await app.send(text_update(rep, f"/start {code}"))).sent()
    assert greeting.text.startswith("欢迎，小李！")
    # The same link does not let a second person in.
    [refused] = (await app.send(text_update(person(778, "小王"), f"/start {code}"))).sent()
    assert "已经用过" in refused.text
    async with app.sessions() as session:
        rep_user = await session.scalar(select(User).where(User.telegram_id == 777))
        assert (rep_user.role, rep_user.language) == (Role.rep, "zh_Hans")
        assert await session.scalar(select(User.id).where(User.telegram_id == 778)) is None


@pytest.mark.parametrize("who, role, allowed", [
    (Role.admin, "manager", True), (Role.admin, "admin", True), (Role.manager, "rep", True),
    (Role.manager, "manager", False), (Role.rep, "rep", False),
])
async def test_who_may_invite_whom(app, who, role, allowed):
    async with app.sessions() as session:
        await add_user(session, name="someone", role=who, telegram_id=31337, language="en")
        await session.commit()
    [reply] = (await app.send(text_update(person(31337, language="en"), f"/invite {role}"))).sent()
    assert ("t.me/" in reply.text) is allowed
    async with app.sessions() as session:
        assert await session.scalar(select(func.count(Invite.id))) == (1 if allowed else 0)


async def test_an_expired_or_unknown_invitation_is_explained(app):
    async with app.sessions() as session:
        admin = await add_user(session, name="admin", role=Role.admin, telegram_id=1)
        session.add(Invite(code="old-code", role=Role.rep, created_by_id=admin.id,
                           expires_at=utcnow() - timedelta(days=1)))
        await session.commit()
    [expired] = (await app.send(text_update(person(2, language="en"), "/start old-code"))).sent()
    assert "expired" in expired.text
    [unknown] = (await app.send(text_update(person(3, language="zh-tw"), "/start nonsense"))).sent()
    assert "邀請" in unknown.text  # Traditional Chinese for a zh-TW Telegram client


async def test_a_rep_finds_their_customer_by_pinyin_and_gets_the_card(app):
    async with app.sessions() as session:
        rep = await add_user(session, name="李业务", telegram_id=100, language="zh_Hans")
        other = await add_user(session, name="张业务", telegram_id=101, language="en")
        mine = await create_customer(session, name="广州市人易软件技术有限公司", short_name="人易软件", owner_id=rep.id,
                                     phone="020-38881234")
        await create_customer(session, name="上海人易物流有限公司", short_name="人易物流", owner_id=other.id)
        await session.commit()
    await app.sync()
    [card] = (await app.send(text_update(person(100), "renyiruan"))).sent()
    assert "<b>广州市人易软件技术有限公司</b>" in card.text and "020-38881234" in card.text
    assert "负责人：李业务" in card.text and "最近联系：从未" in card.text
    # The other rep's 人易 is not shown to this rep, even for a query that fits both.
    [only_mine] = (await app.send(text_update(person(100), "人易"))).sent()
    assert "人易物流" not in only_mine.text
    # The manager-less other rep sees only theirs, in English.
    [theirs] = (await app.send(text_update(person(101, language="en"), "renyi"))).sent()
    assert "上海人易物流有限公司" in theirs.text and "Owner: 张业务" in theirs.text and mine.name not in theirs.text


async def test_several_matches_come_as_buttons_and_a_stale_button_is_refused(app):
    async with app.sessions() as session:
        admin = await add_user(session, name="admin", role=Role.admin, telegram_id=1, language="en")
        ids = [(await create_customer(session, name=f"华信{n}有限公司", short_name=f"华信{n}")).id for n in "一二三"]
        await session.commit()
    await app.sync()
    [choice] = (await app.send(text_update(person(1, language="en"), "华信"))).sent()
    assert choice.text == "Which one?"
    *buttons, new = [row[0] for row in choice.reply_markup.inline_keyboard]
    assert {b.callback_data for b in buttons} == {CustomerCallback(action="card", id=i).pack() for i in ids}
    assert new.text == "➕ New customer “华信”"  # none is exactly 华信: adding it is offered too
    recorder = await app.send(button_update(person(1, language="en"), buttons[0].callback_data))
    [card] = recorder.sent()
    assert card.text.startswith("<b>华信")
    stale = await app.send(button_update(person(1, language="en"), CustomerCallback(action="card", id=99999).pack()))
    assert stale.answers()[0].show_alert and not stale.sent()
    garbage = await app.send(button_update(person(1, language="en"), "cust:card:not-a-number"))
    assert not garbage.sent() and garbage.answers()[0].show_alert
    assert "no longer works" in garbage.answers()[0].text
    assert admin.id


@pytest.mark.parametrize("text, expected", [
    ("不存在的公司", "No customer matches"),
    ("/find", "Type part of a customer's name"),
    ("x" * 500, "too long"),
])
async def test_searches_that_cannot_work_get_a_helpful_reply(app, text, expected):
    async with app.sessions() as session:
        await add_user(session, name="admin", role=Role.admin, telegram_id=1, language="en")
        await session.commit()
    [reply] = (await app.send(text_update(person(1, language="en"), text))).sent()
    assert expected in reply.text


async def test_a_sticker_from_a_rep_gets_a_hint_not_an_error(app):
    async with app.sessions() as session:
        await add_user(session, name="rep", telegram_id=5, language="en")
        await session.commit()
    [reply] = (await app.send(sticker_update(person(5, language="en")))).sent()
    assert "Type a customer's name" in reply.text


async def test_a_user_switches_language_and_the_bot_follows(app):
    from bot.callbacks import LanguageCallback

    async with app.sessions() as session:
        await add_user(session, name="陳先生", telegram_id=60, language="zh_Hans")
        await session.commit()
    me = person(60, language="zh-hans")
    [menu] = (await app.send(text_update(me, "/lang"))).sent()
    assert menu.text == "选择语言：" and len(menu.reply_markup.inline_keyboard) == 3
    [done] = (await app.send(button_update(me, LanguageCallback(code="zh_Hant").pack()))).sent()
    assert done.text == "語言已設定：繁體中文。"
    [reply] = (await app.send(text_update(me, "不存在的公司"))).sent()
    assert reply.text.startswith("沒有找到")
    async with app.sessions() as session:
        assert (await session.scalar(select(User).where(User.telegram_id == 60))).language == "zh_Hant"
    forged = await app.send(button_update(me, "lang:fr"))
    assert not forged.sent()


async def test_a_view_narrows_only_to_a_member_of_ones_own_team(session):
    from services.access import narrowed_to, team_members, viewer_for
    from services.messages import DomainError

    boss = await add_user(session, name="Boss", role=Role.manager)
    mine = await add_user(session, name="Mine", manager_id=boss.id)
    other_boss = await add_user(session, name="Other boss", role=Role.manager)
    theirs = await add_user(session, name="Theirs", manager_id=other_boss.id)
    viewer = await viewer_for(session, boss)
    assert [u.name for u in await team_members(session, viewer)] == ["Boss", "Mine"]
    assert [u.name for u in await team_members(session, viewer, excluding=mine.id)] == ["Boss"]
    narrowed, member = await narrowed_to(session, viewer, mine.id)
    assert member.id == mine.id and narrowed.owners == frozenset({mine.id}) and not narrowed.unassigned
    for refused in (theirs.id, 424242):
        with pytest.raises(DomainError):
            await narrowed_to(session, viewer, refused)
    with pytest.raises(DomainError):  # a rep has no team to narrow to
        await narrowed_to(session, await viewer_for(session, mine), mine.id)
