"""Faults from outside: the database locked or gone, Redis down, the Bot API timing out, answering 5xx or
429. The person hears "nothing was saved, try again" in their language, nothing is half-written, the
conversation waits where it was, and the same input works once the fault is over. (The outbox side —
reminders that queue while Telegram is unreachable and go out after — is in test_delivery.py.)"""

from __future__ import annotations

import pytest
from aiogram.exceptions import TelegramNetworkError, TelegramRetryAfter, TelegramServerError
from aiogram.methods import SendMessage
from sqlalchemy import event, func, select

from bot.callbacks import LogCallback
from bot.middlewares import DatabaseMiddleware
from models import Interaction
from services.customers import create_customer
from services.users import add_user
from tests.botkit import button_update, make_app, person, text_update

REP = 8100
TRY_AGAIN = {"en": "nothing was saved", "zh_Hans": "没有保存任何内容", "zh_Hant": "沒有儲存任何內容"}


@pytest.fixture
async def app(engine):
    app = await make_app(engine)
    async with app.sessions() as session:
        rep = await add_user(session, name="Rep", telegram_id=REP, language="zh_Hant")
        customer = await create_customer(session, name="台北永豐資訊股份有限公司", short_name="永豐資訊", owner_id=rep.id)
        await session.commit()
    await app.sync()
    app.customer_id = customer.id
    app.engine = engine
    return app


async def visits(app) -> int:
    async with app.sessions() as session:
        return await session.scalar(select(func.count(Interaction.id)))


async def start_call(app) -> None:
    await app.send(button_update(person(REP), LogCallback(kind="call", id=app.customer_id).pack()))


async def test_a_locked_database_gets_try_again_and_the_note_can_be_sent_again(app):
    await start_call(app)
    locked = {"on": True}

    def refuse_writes(conn, cursor, statement, parameters, context, executemany):
        if locked["on"] and statement.lstrip().upper().startswith("INSERT INTO INTERACTION"):
            raise RuntimeError("database is locked")

    event.listen(app.engine.sync_engine, "before_cursor_execute", refuse_writes)
    try:
        [reply] = (await app.send(text_update(person(REP), "通話：續約"))).sent()
        assert TRY_AGAIN["zh_Hant"] in reply.text and await visits(app) == 0
        locked["on"] = False
        [saved] = (await app.send(text_update(person(REP), "通話：續約"))).sent()
        assert saved.text.startswith("已儲存") and await visits(app) == 1
    finally:
        event.remove(app.engine.sync_engine, "before_cursor_execute", refuse_writes)


async def test_an_unreachable_database_gets_try_again_in_the_senders_language(app):
    from bot.db import make_engine, make_sessionmaker

    gone = make_engine("postgresql+asyncpg://nobody@127.0.0.1:1/none")
    middleware = next(m for m in app.dispatcher.update.outer_middleware[:] if isinstance(m, DatabaseMiddleware))
    working, middleware.sessions = middleware.sessions, make_sessionmaker(gone)
    try:
        [reply] = (await app.send(text_update(person(REP, language="en"), "永豐"))).sent()
        assert TRY_AGAIN["en"] in reply.text
    finally:
        middleware.sessions = working
        await gone.dispose()
    [card] = (await app.send(text_update(person(REP), "永豐"))).sent()
    assert "台北永豐資訊股份有限公司" in card.text


async def test_redis_down_gets_try_again_not_silence(engine):
    app = await make_app(engine, redis_url="redis://127.0.0.1:1/0")
    async with app.sessions() as session:
        await add_user(session, name="Rep", telegram_id=REP, language="en")
        await session.commit()
    try:
        [reply] = (await app.send(text_update(person(REP, language="en"), "anything"))).sent()
        assert TRY_AGAIN["en"] in reply.text
    finally:
        await app.dispatcher.storage.close()


@pytest.mark.parametrize("fault", ["timeout", "5xx"])
async def test_the_bot_api_failing_the_reply_saves_nothing_and_the_note_can_be_resent(app, fault):
    await start_call(app)
    original, failing = app.recorder.make_request, {"left": 2}

    async def flaky(bot, method, timeout=None):
        if isinstance(method, SendMessage) and failing["left"]:
            failing["left"] -= 1
            if fault == "timeout":
                raise TelegramNetworkError(method=method, message="Request timeout error")
            if fault == "5xx":
                raise TelegramServerError(method=method, message="Bad Gateway")
            raise TelegramRetryAfter(method=method, message="Too Many Requests", retry_after=60)
        return await original(bot, method, timeout)

    app.recorder.make_request = flaky
    await app.send(text_update(person(REP), "拜訪紀錄"))  # the reply and the apology both fail
    assert await visits(app) == 0
    [saved] = (await app.send(text_update(person(REP), "拜訪紀錄"))).sent()
    assert saved.text.startswith("已儲存") and await visits(app) == 1


async def test_a_connection_dropped_under_the_reply_is_tried_again_and_the_note_is_saved(app):
    """Issue 18's load bench: a /report reply failed on a kept-alive connection the Bot API server had
    closed ("Server disconnected"). Telegram never read that request: it is sent again on a new connection."""
    await start_call(app)
    original, drops = app.recorder.make_request, {"left": 2}

    async def dropping(bot, method, timeout=None):
        if isinstance(method, SendMessage) and drops["left"]:
            drops["left"] -= 1
            raise TelegramNetworkError(method=method, message="HTTP Client says - ServerDisconnectedError: Server disconnected")
        return await original(bot, method, timeout)

    app.recorder.make_request = dropping
    [reply] = (await app.send(text_update(person(REP), "拜訪紀錄"))).sent()
    assert reply.text.startswith("已儲存") and await visits(app) == 1 and drops["left"] == 0


async def test_a_reply_held_up_a_minute_by_flood_control_is_queued_with_the_note_not_dropped(app):
    """Issue 18: a reply must never be dropped. Telegram answers 429 "retry after 60" to the reply: the
    note is saved, and the reply goes into the outbox in the same transaction, to be sent when Telegram
    allows, by the one sender and its limiter."""
    from bot.retry import limiter_for
    from models import OutboxMessage

    await start_call(app)
    original, calls = app.recorder.make_request, {"n": 0}

    async def flooded(bot, method, timeout=None):
        if isinstance(method, SendMessage):
            calls["n"] += 1
            raise TelegramRetryAfter(method=method, message="Too Many Requests", retry_after=60)
        return await original(bot, method, timeout)

    app.recorder.make_request = flooded
    await app.send(text_update(person(REP), "拜訪紀錄"))
    assert calls["n"] == 1 and await visits(app) == 1  # no retry loop of a minute inside the transaction
    async with app.sessions() as session:
        [queued] = (await session.execute(select(OutboxMessage))).scalars().all()
    assert queued.chat_id == REP and queued.kind == "reply" and queued.text.startswith("已儲存")
    assert 59 <= (queued.not_before - queued.created_at).total_seconds() <= 61
    assert limiter_for(app.bot).chat_wait(REP) > 50  # the outbox holds that chat until then, too


async def test_a_lookup_is_answered_at_once_while_another_writer_holds_sqlites_lock_and_recorded_afterwards(app):
    """Issue 18's load bench: lookups waited 1-6 s to record their update id while jobs (and other lookups)
    held SQLite's one write lock. An update that wrote nothing records its id after its transaction, with
    others (bot.ledger): it never waits for the lock, and a redelivered copy is still skipped. An update
    that writes still waits, records its id in its own transaction, and a wait over a second is logged."""
    import asyncio
    import contextlib
    import sqlite3
    import threading
    import time

    from models import HandledUpdate

    if app.engine.url.get_backend_name() != "sqlite":
        return  # PostgreSQL has no database-wide write lock: every update records its id itself

    def another_writer(hold: float) -> None:
        with contextlib.closing(sqlite3.connect(app.engine.url.database, timeout=30, isolation_level=None)) as other:
            other.execute("BEGIN IMMEDIATE")
            time.sleep(hold)
            other.execute("COMMIT")

    async def recorded(update_id: int) -> bool:
        async with app.sessions() as session:
            return await session.get(HandledUpdate, update_id) is not None

    writer = threading.Thread(target=another_writer, args=(2.0,))
    writer.start()
    await asyncio.sleep(0.1)
    lookup = text_update(person(REP), "永豐資訊")
    started = time.perf_counter()
    replies = (await app.send(lookup)).sent()
    assert time.perf_counter() - started < 1.0  # the lock is held 2 s: the lookup did not wait for it
    assert replies and "永豐" in replies[0].text
    assert not (await app.send(lookup)).sent()  # a redelivered copy, its id not written yet: skipped
    await asyncio.to_thread(writer.join)
    for _ in range(40):
        if await recorded(lookup.update_id):
            break
        await asyncio.sleep(0.1)
    assert await recorded(lookup.update_id)  # written a moment after the lock was free

    await start_call(app)
    writer = threading.Thread(target=another_writer, args=(1.5,))
    writer.start()
    await asyncio.sleep(0.1)
    visit = text_update(person(REP), "通話：續約")
    started = time.perf_counter()
    [saved] = (await app.send(visit)).sent()
    await asyncio.to_thread(writer.join)
    assert time.perf_counter() - started > 1.2  # it waited for the lock
    assert saved.text.startswith("已儲存") and await visits(app) == 1
    assert await recorded(visit.update_id)  # in the visit's own transaction
