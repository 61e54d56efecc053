"""Delivery: morning digests at the right local time (DST included), the outbox, and the sender within
Telegram's limits — 429s, blocked users, restarts in the middle of sending."""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiogram import Bot
from aiogram.client.session.base import BaseSession
from aiogram.exceptions import TelegramForbiddenError, TelegramNetworkError, TelegramRetryAfter
from aiogram.methods import SendMessage, TelegramMethod
from aiogram.types import Chat, Message
from sqlalchemy import select, update

from bot.db import make_sessionmaker
from bot.notify import BotPresenter
from bot.sender import RateLimiter, Sender
from jobs.reminders import Runtime, plan_digests, scan
from models import ContactStrategy, Customer, OutboxMessage, User
from services import outbox
from services.customers import create_customer
from services.users import add_user
from tests.botkit import BOT_USER

_ids = itertools.count(1000)


class FakeTelegram(BaseSession):
    """Answers sendMessage like Telegram; `script(chat_id, attempt)` may raise to inject failures."""

    def __init__(self, delay: float = 0.0, script=None) -> None:
        super().__init__()
        self.delay, self.script = delay, script
        self.delivered: list[tuple[int, str, float]] = []
        self.calls: Counter[int] = Counter()

    async def close(self) -> None:
        pass

    async def stream_content(self, *args: Any, **kwargs: Any):
        yield b""

    async def make_request(self, bot: Bot, method: TelegramMethod[Any], timeout: int | None = None) -> Any:
        assert isinstance(method, SendMessage)
        self.calls[method.chat_id] += 1
        if self.script:
            self.script(method, self.calls[method.chat_id])
        await asyncio.sleep(self.delay)
        self.delivered.append((method.chat_id, method.text, asyncio.get_running_loop().time()))
        return Message(message_id=next(_ids), date=datetime.now(UTC), chat=Chat(id=method.chat_id, type="private"),
                       text=method.text, from_user=BOT_USER)


def sender_for(engine, telegram: FakeTelegram, **kwargs) -> Sender:
    return Sender(Bot("42:TEST", session=telegram), make_sessionmaker(engine), **kwargs)


async def queue(engine, messages: list[tuple[str, int]]) -> None:
    async with make_sessionmaker(engine)() as session, session.begin():
        for key, chat in messages:
            await outbox.enqueue(session, key=key, chat_id=chat, kind="notice", text=key)


async def rows(engine) -> list[OutboxMessage]:
    async with make_sessionmaker(engine)() as session:
        return list((await session.execute(select(OutboxMessage).order_by(OutboxMessage.id))).scalars())


async def test_the_same_key_is_queued_once(engine):
    async with make_sessionmaker(engine)() as session, session.begin():
        assert await outbox.enqueue(session, key="k", chat_id=1, kind="notice", text="a") is True
        assert await outbox.enqueue(session, key="k", chat_id=1, kind="notice", text="b") is False
    assert [r.text for r in await rows(engine)] == ["a"]


async def test_sender_sends_everything_once_in_order_and_records_message_ids(engine):
    await queue(engine, [(f"m{i}", 100 + i % 3) for i in range(9)])
    telegram = FakeTelegram()
    sender = sender_for(engine, telegram, limiter=RateLimiter(private_gap=0.05, margin=0.0))
    assert await sender.drain() == 9
    sent = await rows(engine)
    assert {r.status for r in sent} == {"sent"} and all(r.message_id for r in sent)
    for chat in (100, 101, 102):
        assert [t for c, t, _ in telegram.delivered if c == chat] == [f"m{i}" for i in range(9) if 100 + i % 3 == chat]


async def test_a_restart_in_the_middle_of_sending_loses_and_repeats_nothing(engine):
    await queue(engine, [(f"m{i}", 200 + i) for i in range(40)])
    telegram = FakeTelegram(delay=0.02)
    first = sender_for(engine, telegram, limiter=RateLimiter(per_second=200, margin=0.0), concurrency=4)
    task = asyncio.create_task(first.drain())
    while len(telegram.delivered) < 10:
        await asyncio.sleep(0.005)
    task.cancel()  # the process is asked to stop while messages are in flight
    with pytest.raises(asyncio.CancelledError):
        await task
    half = await rows(engine)
    assert 10 <= sum(r.status == "sent" for r in half) < 40
    assert all(r.claimed_until is None for r in half if r.status == "sent")
    second = sender_for(engine, telegram, limiter=RateLimiter(per_second=200, margin=0.0))  # the restarted process
    await second.drain()
    assert {r.status for r in await rows(engine)} == {"sent"}
    assert sorted(t for _, t, _ in telegram.delivered) == sorted(f"m{i}" for i in range(40))  # no duplicate


async def test_429_holds_that_chat_for_retry_after_without_spending_an_attempt(engine):
    await queue(engine, [("a1", 300), ("a2", 300), ("b1", 301)])

    def script(method, call):
        if method.chat_id == 300 and call == 1:
            raise TelegramRetryAfter(method, "Too Many Requests: retry after 1", 1)

    telegram = FakeTelegram(script=script)
    sender = sender_for(engine, telegram, limiter=RateLimiter(private_gap=0.05, margin=0.0))
    started = asyncio.get_running_loop().time()
    await sender.drain()  # waits out the short block and finishes
    order = [t for _, t, _ in telegram.delivered]
    assert order == ["b1", "a1", "a2"]  # the other chat is not held up; chat 300 keeps its order
    a1_at = next(at for _, t, at in telegram.delivered if t == "a1")
    assert a1_at - started >= 1.0  # nothing went to chat 300 during retry_after
    by_key = {r.key: r for r in await rows(engine)}
    assert {r.status for r in by_key.values()} == {"sent"}
    assert by_key["a1"].attempts == 1  # the 429 did not count as an attempt


async def test_network_errors_are_retried_with_backoff(engine):
    await queue(engine, [("n1", 400)])

    def script(method, call):
        if call == 1:
            raise TelegramNetworkError(method, "connection reset")

    sender = sender_for(engine, FakeTelegram(script=script))
    await sender.drain()
    [row] = await rows(engine)
    assert row.status == "pending" and row.attempts == 1 and row.next_attempt_at > datetime.now(UTC)
    async with make_sessionmaker(engine)() as session, session.begin():
        await session.execute(update(OutboxMessage).values(next_attempt_at=datetime.now(UTC)))
    await sender.drain()
    assert (await rows(engine))[0].status == "sent"


async def test_a_user_who_blocked_the_bot_is_marked_and_their_queue_failed(engine):
    sessions = make_sessionmaker(engine)
    async with sessions() as session, session.begin():
        user = await add_user(session, name="Gone", telegram_id=500)
    await queue(engine, [("g1", 500), ("g2", 500), ("ok", 501)])

    def script(method, call):
        if method.chat_id == 500:
            raise TelegramForbiddenError(method, "Forbidden: bot was blocked by the user")

    telegram = FakeTelegram(script=script)
    await sender_for(engine, telegram).drain()
    assert telegram.calls[500] == 1  # no second try after a permanent error
    by_key = {r.key: r for r in await rows(engine)}
    assert by_key["ok"].status == "sent"
    assert by_key["g1"].status == by_key["g2"].status == "failed" and "blocked" in by_key["g2"].error
    async with sessions() as session:
        gone = await session.get(User, user.id)
        assert gone.unreachable_at is not None and "blocked" in gone.unreachable_reason
        assert not outbox.reachable(gone)


def test_rate_limiter_keeps_telegrams_limits():
    clock = [0.0]
    limiter = RateLimiter(clock=lambda: clock[0], margin=0.0)
    limiter.record(7)
    assert limiter.chat_wait(7) == pytest.approx(1.0) and limiter.chat_wait(8) == 0
    clock[0] = 1.0
    assert limiter.chat_wait(7) == 0
    for _ in range(20):  # a group: 20 a minute
        limiter.record(-100)
    assert limiter.chat_wait(-100) == pytest.approx(60.0)
    clock[0] = 61.0
    assert limiter.chat_wait(-100) == 0
    for chat in range(30):
        limiter.record(1000 + chat)
    assert limiter.global_wait() == pytest.approx(1.0)
    limiter.block(9, 5)
    assert limiter.chat_wait(9) == pytest.approx(5.0)


# --------------------------------------------------------------------------- digests and time zones


@pytest.fixture
async def two_reps(engine):
    sessions = make_sessionmaker(engine)
    async with sessions() as session, session.begin():
        strategy = ContactStrategy(code="every7", cycle_days=7, label_zh_hans="每周", label_zh_hant="每週",
                                   label_en="weekly")
        session.add(strategy)
        await session.flush()
        china = await add_user(session, name="Li", telegram_id=600, timezone="Asia/Shanghai", language="zh_Hans")
        america = await add_user(session, name="Ann", telegram_id=601, timezone="America/New_York", language="en")
        for rep in (china, america):
            c = await create_customer(session, name=f"Customer of {rep.name}", owner_id=rep.id,
                                      contact_strategy_id=strategy.id)
            await session.execute(update(Customer).where(Customer.id == c.id)
                                  .values(created_at=datetime(2026, 1, 1, tzinfo=UTC)))
    return sessions, china, america


async def test_digests_arrive_once_per_working_day_at_9_local_across_the_dst_change(two_reps):
    sessions, china, america = two_reps
    runtime = Runtime(sessions, present=BotPresenter())
    # New York springs forward on Sunday 8 March 2026. Run the digest job every 15 minutes for five days.
    moment, end = datetime(2026, 3, 5, 12, tzinfo=UTC), datetime(2026, 3, 10, 12, tzinfo=UTC)
    while moment < end:
        await plan_digests(runtime, moment)
        moment += timedelta(minutes=15)
    async with sessions() as session:
        digests = (await session.execute(select(OutboxMessage).where(OutboxMessage.kind == "digest")
                                         .order_by(OutboxMessage.id))).scalars().all()
    def local(row, tz):
        return row.created_at.astimezone(ZoneInfo(tz))
    ny = [local(r, "America/New_York") for r in digests if r.chat_id == 601]
    sh = [local(r, "Asia/Shanghai") for r in digests if r.chat_id == 600]
    # Thu 5th (NY only: Shanghai's 5th began before the run), Fri 6th, Mon 9th, Tue 10th (Shanghai only);
    # never on the weekend, exactly once a day, at 09:00 local before and after the change.
    assert [(d.date(), d.time()) for d in ny] == [(date(2026, 3, d), time(9, 0)) for d in (5, 6, 9)]
    assert [(d.date(), d.time()) for d in sh] == [(date(2026, 3, d), time(9, 0)) for d in (6, 9, 10)]
    assert [r.key for r in digests] == list(dict.fromkeys(r.key for r in digests))
    english = next(r for r in digests if r.chat_id == 601)
    assert english.text.startswith("<b>Good morning! Due today: 1. The ones that count most come first.</b>")
    assert "Customer of Ann" in english.text and "Customer of Li" not in english.text
    chinese = next(r for r in digests if r.chat_id == 600)
    assert "Customer of Li" in chinese.text and "Good morning" not in chinese.text


async def test_a_process_down_all_morning_catches_up_once_within_working_hours(two_reps):
    sessions, china, _ = two_reps
    runtime = Runtime(sessions, present=BotPresenter())
    late = datetime.combine(date(2026, 3, 6), time(15, 40), ZoneInfo("Asia/Shanghai")).astimezone(UTC)
    assert await plan_digests(runtime, late) == 1  # Shanghai: the 09:00 digest, late but once
    assert await plan_digests(runtime, late + timedelta(minutes=5)) == 0
    evening = datetime.combine(date(2026, 3, 9), time(19, 0), ZoneInfo("Asia/Shanghai")).astimezone(UTC)
    assert await plan_digests(runtime, evening) == 0  # after working hours: tomorrow's digest will carry it


async def test_an_escalation_reaches_the_manager_inside_working_hours(engine):
    sessions = make_sessionmaker(engine)
    async with sessions() as session, session.begin():
        strategy = ContactStrategy(code="every7", cycle_days=7, label_zh_hans="每周", label_zh_hant="每週",
                                   label_en="weekly")
        session.add(strategy)
        await session.flush()
        boss = await add_user(session, name="Boss", role="manager", telegram_id=700, language="en")
        rep = await add_user(session, name="Rep", telegram_id=701, manager_id=boss.id)
        c = await create_customer(session, name="Overdue Ltd", owner_id=rep.id, contact_strategy_id=strategy.id)
        await session.execute(update(Customer).where(Customer.id == c.id)
                              .values(created_at=datetime(2026, 1, 1, tzinfo=UTC)))
    night = datetime.combine(date(2026, 3, 6), time(23, 30), ZoneInfo("Asia/Shanghai")).astimezone(UTC)
    await scan(Runtime(sessions, present=BotPresenter()), night)
    await scan(Runtime(sessions, present=BotPresenter()), night + timedelta(minutes=15))  # a second scan adds nothing
    async with sessions() as session:
        [notice] = (await session.execute(select(OutboxMessage).where(OutboxMessage.kind == "urgent"))).scalars().all()
    assert notice.chat_id == 700 and "Overdue Ltd" in notice.text and "Rep" in notice.text
    # Friday 23:30 → not before Monday 09:00 Shanghai time.
    assert notice.not_before == datetime.combine(date(2026, 3, 9), time(9), ZoneInfo("Asia/Shanghai"))


async def test_a_reply_that_is_not_json_spends_attempts_until_the_row_fails_with_the_reason(engine):
    """A proxy answering HTML (aiogram's ClientDecodeError) used to leave rows pending with 0 attempts forever."""
    from aiogram.exceptions import ClientDecodeError

    await queue(engine, [("garbled", 401)])

    def script(method, call):
        raise ClientDecodeError("Failed to deserialize object", ValueError("not JSON"), "<html>502</html>")

    sender = sender_for(engine, FakeTelegram(script=script), limiter=RateLimiter(private_gap=0))
    for attempt in range(1, outbox.MAX_ATTEMPTS + 1):
        await sender.drain()
        [row] = await rows(engine)
        assert row.attempts == attempt
        async with make_sessionmaker(engine)() as session, session.begin():
            await session.execute(update(OutboxMessage).values(next_attempt_at=datetime.now(UTC)))
    [row] = await rows(engine)
    assert row.status == "failed" and "ClientDecodeError" in row.error


async def test_a_chart_missing_at_send_time_fails_at_once(engine, tmp_path):
    async with make_sessionmaker(engine)() as session, session.begin():
        await outbox.enqueue(session, key="chart", chat_id=402, kind="report", text="weekly",
                             photo=str(tmp_path / "gone.png"))
    sender = sender_for(engine, FakeTelegram())
    await sender.drain()
    [row] = await rows(engine)
    assert row.status == "failed" and "gone.png" in row.error and row.attempts == 1


async def test_a_reply_hit_by_flood_control_arrives_late_not_never_and_holds_the_outbox_for_that_chat(engine):
    """Issue 18: three lookup replies were dropped after 3 retries while a digest burst went to the same
    chat. A reply waits as Telegram says, as often as needed, and the outbox (the same limiter) waits for
    that chat meanwhile and a second after."""
    from aiogram.exceptions import TelegramRetryAfter
    from aiogram.methods import SendMessage

    from bot.retry import limiter_for
    from services.users import add_user
    from tests.botkit import make_app, person, text_update

    app = await make_app(engine)
    async with app.sessions() as session:
        await add_user(session, name="Lee", telegram_id=7301, language="en")
        await session.commit()
    original, left = app.recorder.make_request, {"n": 2}

    async def flooded(bot, method, timeout=None):
        if isinstance(method, SendMessage) and left["n"]:
            left["n"] -= 1
            raise TelegramRetryAfter(method=method, message="Too Many Requests: retry after 0", retry_after=0)
        return await original(bot, method, timeout)

    app.recorder.make_request = flooded
    [reply] = (await app.send(text_update(person(7301, language="en"), "no such customer"))).sent()
    assert left["n"] == 0 and reply.chat_id == 7301  # two 429s (a retry_after of 0 waits a second), then delivered
    assert limiter_for(app.bot).chat_wait(7301) > 0.5  # the outbox gives that chat its second


async def _long_uncontacted(engine, count: int, *, telegram_id: int) -> None:
    """A rep with `count` customers nobody contacted for 400 days: each is due for the scan."""
    async with make_sessionmaker(engine)() as session:
        rep = await add_user(session, name="Lee", telegram_id=telegram_id)
        strategy = (await session.execute(select(ContactStrategy).order_by(ContactStrategy.id))).scalars().first()
        for n in range(count):
            customer = await create_customer(session, name=f"久未联系客户{n:02d}", owner_id=rep.id)
            customer.contact_strategy_id = strategy.id
            customer.created_at = datetime.now(UTC) - timedelta(days=400)
        await session.commit()


async def test_the_first_big_scan_writes_in_short_transactions_with_the_same_result(engine, monkeypatch):
    """Issue 18: the first scan after a big import held SQLite's write lock for 19-28 s in one transaction.
    Written a few at a time it creates exactly what one transaction did."""
    import jobs.reminders as job

    await _long_uncontacted(engine, 23, telegram_id=7401)
    monkeypatch.setattr(job, "SCAN_BATCH", 5)
    runtime = Runtime(make_sessionmaker(engine))
    transactions = []
    real_apply = job.reminders.apply

    async def counting(session, due, *args, **kwargs):
        transactions.append(len(list(due)))
        return await real_apply(session, due, *args, **kwargs)

    monkeypatch.setattr(job.reminders, "apply", counting)
    created = await scan(runtime)
    assert created >= 23 and len(transactions) == -(-created // 5) and max(transactions) <= 5
    assert 0 < runtime.longest_write < 5
    assert await scan(runtime) == 0  # nothing twice


async def test_the_scans_longest_write_transaction_leaves_out_the_collector_pass_that_follows_it(engine, monkeypatch):
    """Issue 18: at 1M customers the scan reported write transactions of 0.3-1.1 s that no statement
    explained: the cycle collector's full pass over the due list, which the first allocation after each
    transaction (the collector switched on again) started. That pass holds no database lock; the figure
    is the transaction's, so it is taken before the collector is on again."""
    import contextlib
    import time as clock

    import jobs.reminders as job

    await _long_uncontacted(engine, 6, telegram_id=7402)
    monkeypatch.setattr(job, "SCAN_BATCH", 2)
    real_pause, passes = job.collector_paused, []

    @contextlib.contextmanager
    def then_a_slow_pass():
        with real_pause():
            yield
        passes.append(1)
        clock.sleep(0.4)  # the pass as slow as at 1M, right when the collector is on again

    monkeypatch.setattr(job, "collector_paused", then_a_slow_pass)
    runtime = Runtime(make_sessionmaker(engine))
    assert await scan(runtime) >= 6 and len(passes) >= 3  # it wrote in several transactions, each followed by a pass
    assert 0 < runtime.longest_write < 0.4
