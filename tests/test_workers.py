"""Issue 16, as deployed: two `main.py run --role worker` processes on one PostgreSQL database with
REDIS_URL. One leads the scheduler; both send the outbox (each claims with SKIP LOCKED and paces by the
limits they share in Redis). 300 messages to 100 chats reach the Bot API stand-in once each, in each chat's
order, without a per-chat 429; both stop cleanly on SIGTERM. (100 chats: more than one sender holds at once
— 60 — so the other always finds messages to claim; with 40 chats one fast worker could take every chat's
next message as the last was sent, and the other found none: seen once in a full run.)"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from bot.db import make_engine, make_sessionmaker
from bot.sandbox.app import create_app
from bot.sandbox.server import serving
from bot.sandbox.telegram import ApiError, BotApi, Limits
from models import OutboxMessage
from services import outbox
from tests.conftest import REDIS_URL, require_redis
from tests.test_webhook import free_port

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "4243:two-workers"
pytestmark = [pytest.mark.postgres, pytest.mark.redis]


async def test_two_workers_share_the_outbox_and_telegrams_limits(pg_url, tmp_path):
    require_redis()
    import redis.asyncio as aioredis

    client = aioredis.from_url(REDIS_URL)
    await client.flushdb()
    engine = make_engine(pg_url)
    sessions = make_sessionmaker(engine)
    chats = [8_000_000 + i for i in range(100)]
    api = BotApi(TOKEN, limits=Limits(global_per_second=30, private_burst=1))
    for chat in chats:
        api.add_person(chat, "Rep")
    refused: Counter[str] = Counter()
    check = api._rate_check

    def counted(chat) -> None:
        try:
            check(chat)
        except ApiError as error:
            refused[error.limit or "?"] += 1
            raise

    api._rate_check = counted
    processes: list[subprocess.Popen] = []
    pending, leaders = None, []
    try:
        async with serving(create_app(api)) as api_url:
            ports = [free_port(), free_port()]
            for n in range(2):
                env = {k: v for k, v in os.environ.items() if k not in ("WEBHOOK_URL", "ADMIN_IDS")}
                env.update(DATABASE_URL=pg_url, REDIS_URL=REDIS_URL, BOT_TOKEN=TOKEN, BOT_API_URL=api_url,
                           HTTP_HOST="127.0.0.1", HTTP_PORT=str(ports[n]), DATA_DIR=str(tmp_path / f"w{n}"),
                           FIELDCRM_NO_BOOTSTRAP="1", LOG_LEVEL="DEBUG", PYTHONUNBUFFERED="1")
                processes.append(subprocess.Popen([sys.executable, str(ROOT / "main.py"), "run", "--role", "worker"],
                                                  cwd=tmp_path, env=env, stderr=subprocess.STDOUT,
                                                  stdout=(tmp_path / f"worker{n}.log").open("w")))
            # Both running before the messages are queued (on a busy machine one may start seconds after the
            # other, and the first would send everything before the second looked).
            async with httpx.AsyncClient(timeout=2) as http:
                up, deadline = set(), time.monotonic() + 120
                while len(up) < 2 and time.monotonic() < deadline:
                    for n, port in enumerate(ports):
                        with contextlib.suppress(httpx.HTTPError):
                            if (await http.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200:
                                up.add(n)
                    await asyncio.sleep(0.2)
            assert len(up) == 2, "the workers did not start"
            async with sessions() as session, session.begin():
                for n in range(3):
                    for chat in chats:
                        await outbox.enqueue(session, key=f"{chat}:{n}", chat_id=chat, kind="notice",
                                             text=f"{chat}:{n}")
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                await asyncio.sleep(0.5)
                async with sessions() as session:
                    pending = await session.scalar(select(func.count()).select_from(OutboxMessage)
                                                   .where(OutboxMessage.status == "pending"))
                if not pending:
                    break
            leaders = [n for n in range(2) if "this worker runs it now" in (tmp_path / f"worker{n}.log").read_text()]
            for process in processes:
                process.terminate()
            codes = [await asyncio.to_thread(process.wait, 40) for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
        await client.flushdb()
        await client.aclose()
        await engine.dispose()
    logs = "\n".join((tmp_path / f"worker{n}.log").read_text() for n in range(2))
    assert pending == 0, logs[-3000:]
    received: dict[int, list[str]] = defaultdict(list)
    for chat in api.chats.values():
        for message in sorted(chat.messages.values(), key=lambda m: m["message_id"]):
            received[chat.id].append(message["text"])
    assert {chat: texts for chat, texts in received.items() if chat in chats} == \
        {chat: [f"{chat}:{n}" for n in range(3)] for chat in chats}  # each once, in its chat's order
    assert refused["chat"] == 0, refused
    assert codes == [0, 0], logs[-3000:]
    assert len(leaders) == 1, logs[-3000:]  # one scheduler (the other waits)
    claimed = [(tmp_path / f"worker{n}.log").read_text().count("claimed [(") for n in range(2)]
    assert all(claimed), claimed  # and both sent
