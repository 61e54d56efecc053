"""Long polling (bot.polling) against a fake Telegram that keeps getUpdates' rules: everything at or above
the offset comes back until confirmed, and an answer takes a moment to travel. Issue 18's load bench saw
updates handled twice, and a new message wait behind one slow update."""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from aiogram import Bot, F, Router
from aiogram.client.session.base import BaseSession
from aiogram.methods import GetMe, GetUpdates, TelegramMethod
from aiogram.types import Chat, Message, Update

from bot.polling import Dispatcher, Ledger
from tests.botkit import BOT_USER, person


class FakeTelegram(BaseSession):
    """getUpdates as Telegram does it: drop what is below the offset, return the rest at once (or wait for
    new ones up to the timeout); each answer arrives `transit` seconds after it was made."""

    def __init__(self, transit: float = 0.0) -> None:
        super().__init__()
        self.pending: list[Update] = []
        self.arrived = asyncio.Event()
        self.transit = transit
        self.polls = 0
        self._ids = itertools.count(1)

    def push(self, text: str, chat: int = 1) -> int:
        update_id = next(self._ids)
        message = Message(message_id=update_id, date=datetime.now(UTC), chat=Chat(id=chat, type="private"),
                          from_user=person(chat), text=text)
        self.pending.append(Update(update_id=update_id, message=message))
        self.arrived.set()
        return update_id

    async def close(self) -> None:
        pass

    async def stream_content(self, *args: Any, **kwargs: Any):
        yield b""

    async def make_request(self, bot: Bot, method: TelegramMethod[Any], timeout: int | None = None) -> Any:
        if isinstance(method, GetMe):
            return BOT_USER
        if not isinstance(method, GetUpdates):
            return True
        self.polls += 1
        if method.offset is not None:
            self.pending = [u for u in self.pending if u.update_id >= method.offset]
        if not self.pending and method.timeout:
            self.arrived.clear()
            try:
                await asyncio.wait_for(self.arrived.wait(), min(method.timeout, 0.2))
            except TimeoutError:
                pass
        answer = list(self.pending[:method.limit or 100])
        await asyncio.sleep(self.transit)  # the answer travels; meanwhile the bot may finish an update
        return answer


def polling(handler) -> Dispatcher:
    dispatcher = Dispatcher()
    router = Router()
    router.message.register(handler, F.text)
    dispatcher.include_router(router)
    return dispatcher


async def _run(dispatcher: Dispatcher, telegram: FakeTelegram, until) -> None:
    bot = Bot("42:TEST", session=telegram)
    task = asyncio.create_task(dispatcher.start_polling(bot, handle_signals=False, polling_timeout=10))
    try:
        await asyncio.wait_for(until(), 20)
    finally:
        await dispatcher.stop_polling()
        await asyncio.wait_for(task, 30)


async def test_every_update_is_handled_once_even_when_answers_cross_finished_updates():
    telegram = FakeTelegram(transit=0.02)
    handled: Counter[int] = Counter()
    rng = random.Random(5)

    async def handler(message: Message, event_update: Update) -> None:
        await asyncio.sleep(rng.choice((0.0, 0.01, 0.03, 0.08)))
        handled[event_update.update_id] += 1

    async def feed() -> None:
        for burst in range(12):
            for chat in range(1, 6):
                telegram.push(f"note {burst}", chat=chat)
            await asyncio.sleep(0.05)
        while sum(handled.values()) < 60 or telegram.pending:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # copies still in flight would be handled now

    await _run(polling(handler), telegram, feed)
    assert sorted(handled) == list(range(1, 61))
    assert set(handled.values()) == {1}, {i: n for i, n in handled.items() if n > 1}


async def test_a_new_message_is_not_kept_waiting_by_one_slow_update():
    telegram = FakeTelegram()
    answered: dict[str, float] = {}

    async def handler(message: Message) -> None:
        if message.text == "slow":
            await asyncio.sleep(4)  # e.g. a reply waiting out Telegram's flood control
        answered[message.text] = time.perf_counter()

    async def feed() -> None:
        telegram.push("slow", chat=1)
        await asyncio.sleep(0.3)
        sent = time.perf_counter()
        telegram.push("quick", chat=2)
        while "quick" not in answered:
            await asyncio.sleep(0.02)
        answered["quick waited"] = answered["quick"] - sent
        while "slow" not in answered:
            await asyncio.sleep(0.05)

    await _run(polling(handler), telegram, feed)
    assert answered["quick waited"] < 1.0, f"waited {answered['quick waited']:.2f} s behind the slow update"
    assert telegram.polls < 60  # it asks again while the slow one runs, but not in a tight loop


def test_the_ledger_never_hands_out_an_update_it_confirmed():
    ledger = Ledger()
    assert ledger.take(5) and ledger.take(6)
    ledger.done(5)
    assert ledger.offset() == 6
    assert not ledger.take(5)  # a copy from an answer made before 5 finished
    ledger.done(6)
    assert ledger.offset() == 7 and not ledger.take(6) and not ledger.take(5)
    assert ledger.take(7)
