"""Outbox sender throughput against the local Bot API stand-in on 127.0.0.1, with Telegram's limits
enforced and 429s injected.

    .venv/bin/python bench/sender_bench.py [--messages 10000] [--chats 1000] [--inject-every 15]

A fresh SQLite database gets `--messages` outbox rows spread over `--chats` private chats (the same number
of users, each with a Telegram id). The stand-in (bot.sandbox) runs in this process behind uvicorn and
enforces Telegram's rates strictly — 30 messages per second overall and 1 per second per private chat,
no burst — answering 429 with retry_after to anything faster; every `--inject-every` seconds it also
answers one send with an injected 429 (retry_after 2). The real `bot.sender.Sender` drains the outbox
through aiogram over HTTP. Printed: messages per second sustained, messages lost (rows not sent, or
never received), duplicated (received twice), and per-chat limit violations (429s the stand-in gave
for rates, i.e. the sender went too fast). Target (issue 5): >= 29 msg/s over 10k messages, 0 lost,
0 duplicated, 0 violations.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aiogram import Bot  # noqa: E402
from aiogram.client.session.aiohttp import AiohttpSession  # noqa: E402
from aiogram.client.telegram import TelegramAPIServer  # noqa: E402
from sqlalchemy import func, insert, select  # noqa: E402

from bot.db import make_engine, make_sessionmaker, upgrade  # noqa: E402
from bot.sandbox.app import create_app  # noqa: E402
from bot.sandbox.server import serving  # noqa: E402
from bot.sandbox.telegram import ApiError, BotApi, Limits  # noqa: E402
from bot.sender import Sender  # noqa: E402
from models import OutboxMessage, User, utcnow  # noqa: E402

TOKEN = "424242:bench"


class CountingApi(BotApi):
    """The stand-in, counting what it refused for rates (violations) and what it injected."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.refused: Counter = Counter()

    def _rate_check(self, chat) -> None:
        try:
            super()._rate_check(chat)
        except ApiError as error:
            self.refused[error.limit] += 1
            raise


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--chats", type=int, default=1_000)
    parser.add_argument("--inject-every", type=float, default=15.0, help="seconds between injected 429s")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(f"sqlite+aiosqlite:///{Path(tmp) / 'bench.sqlite3'}")
        await upgrade(engine)
        sessions = make_sessionmaker(engine)
        now = utcnow()
        first_chat = 5_000_000
        async with sessions() as session, session.begin():
            await session.execute(insert(User), [
                {"name": f"rep {i}", "telegram_id": first_chat + i, "role": "rep", "language": "en",
                 "timezone": "UTC", "work_days": "1234567", "active": True, "created_at": now}
                for i in range(args.chats)])
            ids = dict((await session.execute(select(User.telegram_id, User.id))).all())
            await session.execute(insert(OutboxMessage), [
                {"key": f"bench:{n}", "chat_id": first_chat + n % args.chats, "user_id": ids[first_chat + n % args.chats],
                 "kind": "notice", "text": f"message #{n}", "status": "pending", "attempts": 0,
                 "not_before": now, "next_attempt_at": now, "created_at": now}
                for n in range(args.messages)])

        api = CountingApi(TOKEN, limits=Limits(global_per_second=30, private_burst=1, private_interval=1.0))
        for i in range(args.chats):
            api.add_person(first_chat + i, f"rep {i}", "en")
        async with serving(create_app(api)) as url:
            bot = Bot(TOKEN, session=AiohttpSession(api=TelegramAPIServer.from_base(url)))
            sender = Sender(bot, sessions)

            async def inject() -> None:
                while True:
                    await asyncio.sleep(args.inject_every)
                    api.inject.append(2)
            injector = asyncio.create_task(inject())
            started = time.perf_counter()
            first_send = None
            try:
                while True:
                    await sender.drain(max_seconds=60)
                    if first_send is None and api.stats["sent"]:
                        first_send = started
                    async with sessions() as session:
                        pending = await session.scalar(select(func.count()).select_from(OutboxMessage).where(
                            OutboxMessage.status != "sent", OutboxMessage.status != "failed"))
                    if not pending:
                        break
                    await asyncio.sleep(0.2)
            finally:
                injector.cancel()
                elapsed = time.perf_counter() - started
                await bot.session.close()

        received = Counter(message["text"] for chat in api.chats.values() for message in chat.messages.values())
        async with sessions() as session:
            statuses = dict((await session.execute(select(OutboxMessage.status, func.count())
                                                   .group_by(OutboxMessage.status))).all())
        await engine.dispose()

    expected = {f"message #{n}" for n in range(args.messages)}
    lost = len(expected - set(received)) + sum(v for k, v in statuses.items() if k != "sent")
    duplicated = sum(count - 1 for count in received.values() if count > 1)
    print(f"{args.messages} messages to {args.chats} private chats in {elapsed:.1f} s: "
          f"{args.messages / elapsed:.1f} msg/s sustained (target >= 29)")
    violations = api.refused["chat"] + api.refused["global"]
    print(f"lost {lost}, duplicated {duplicated}, limit violations {violations} (429s the stand-in answered for "
          f"rates: {api.refused['chat']} per chat, {api.refused['global']} overall), injected 429s "
          f"{api.refused['injected']} (each retried after its retry_after)")
    print(f"outbox rows by status: {statuses}")


if __name__ == "__main__":
    asyncio.run(main())
