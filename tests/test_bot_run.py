"""Run mode: the bot polls Telegram with a localized menu, and keeps its lookup index in sync."""

from __future__ import annotations

import asyncio

from aiogram.methods import GetUpdates, SetMyCommands

from bot.runner import keep_in_sync, run_polling
from models import Role
from services.customers import create_customer
from services.users import add_user
from tests.botkit import make_app


async def test_polling_starts_with_a_menu_per_language_and_role_and_stops_cleanly(engine):
    app = await make_app(engine)
    async with app.sessions() as session:
        await add_user(session, name="Boss", role=Role.admin, telegram_id=11, language="en")
        await session.commit()
    polls = []
    original = app.recorder.make_request

    async def telegram(bot, method, timeout=None):
        if isinstance(method, GetUpdates):
            polls.append(method)
            if len(polls) == 2:
                await app.dispatcher.stop_polling()
            await asyncio.sleep(0.01)
            return []
        return await original(bot, method, timeout)

    app.recorder.make_request = telegram
    await asyncio.wait_for(run_polling(app.bot, app.dispatcher, app.sessions, app.dispatcher["settings"],
                                       app.index), timeout=20)
    menus = [r for r in app.recorder.requests if isinstance(r, SetMyCommands)]
    by_language = {m.language_code: [c.command for c in m.commands] for m in menus if m.scope.type == "default"}
    rep_menu = ["today", "find", "nearby", "route", "new", "history", "settings", "cancel", "lang"]
    assert by_language == {None: rep_menu, "zh": rep_menu, "en": rep_menu}
    zh = next(m for m in menus if m.language_code == "zh")
    assert [c.description for c in zh.commands[:2]] == ["今天要做的事", "查找客户"]
    [boss] = [m for m in menus if m.scope.type == "chat"]
    assert boss.scope.chat_id == 11 and [c.command for c in boss.commands] == [*rep_menu, "report", "invite", "audit"]
    assert len(polls) >= 2


async def test_the_index_picks_up_customers_added_by_another_process(engine):
    app = await make_app(engine)
    syncing = asyncio.create_task(keep_in_sync(app.index, app.sessions, every=0.05))
    try:
        async with app.sessions() as session:  # e.g. `python main.py import …` elsewhere
            await create_customer(session, name="南京金盛贸易有限公司", short_name="金盛贸易")
            await session.commit()
        for _ in range(100):
            if app.index.search("jinsheng", app_viewer()):
                break
            await asyncio.sleep(0.05)
        assert app.index.search("jinsheng", app_viewer())[0].name == "南京金盛贸易有限公司"
    finally:
        syncing.cancel()


def app_viewer():
    from services.access import Viewer

    return Viewer.everyone()


async def test_the_bot_starts_and_answers_when_every_optional_start_up_call_fails(engine, monkeypatch):
    """An emulator without setMyCommands (500), an admin who never opened the bot (400 chat not found), and
    Telegram unreachable for the first getMe: the bot logs, waits, and polls anyway."""
    from aiogram.exceptions import TelegramBadRequest, TelegramNetworkError, TelegramServerError
    from aiogram.methods import GetMe

    import bot.runner as runner

    monkeypatch.setattr(runner, "MENU_RETRY_SECONDS", 0.05)
    app = await make_app(engine)
    async with app.sessions() as session:
        await add_user(session, name="First admin", role=Role.admin, telegram_id=11, language="en")
        await session.commit()
    polls, me_calls, menu_calls = [], [], []
    original = app.recorder.make_request
    app.bot._me = None

    async def telegram(bot, method, timeout=None):
        if isinstance(method, GetMe):
            me_calls.append(method)
            if len(me_calls) == 1:
                raise TelegramNetworkError(method=method, message="connection refused")
        if isinstance(method, SetMyCommands):
            menu_calls.append(method)
            if method.scope.type == "chat":
                raise TelegramBadRequest(method=method, message="Bad Request: chat not found")
            raise TelegramServerError(method=method, message="Internal Server Error: method not implemented")
        if isinstance(method, GetUpdates):
            polls.append(method)
            if len(polls) == 5:
                await app.dispatcher.stop_polling()
            await asyncio.sleep(0.05)
            return []
        return await original(bot, method, timeout)

    monkeypatch.setattr(runner, "wait_for_telegram", _fast(runner.wait_for_telegram))
    app.recorder.make_request = telegram
    await asyncio.wait_for(run_polling(app.bot, app.dispatcher, app.sessions, app.dispatcher["settings"],
                                       app.index), timeout=20)
    assert len(polls) == 5 and len(me_calls) >= 2
    # all four menus were tried at start and tried again later (the retry runs while the bot polls)
    assert len(menu_calls) >= 8


def _fast(wait_for_telegram):
    async def fast(bot):
        await wait_for_telegram(bot, first_wait=0.01)
    return fast
