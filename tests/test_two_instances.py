"""Issue 16: two bot instances behind a load balancer share one conversation. Two real processes
(`main.py run --role bot`, webhook mode) over the same PostgreSQL and Redis; the Bot API stand-in (in this
test's process) delivers each step of a rep's "/new customer" conversation to the other instance. The
conversation's state lives in Redis (aiogram's RedisStorage, with Redis event isolation), so each step
lands where the last one left off, and the customer is created once; the other instance's lookup index
hears of the new customer through Redis (bot.index_feed) and finds it by part of its name at once — and the
same for a customer an ERP job creates through one instance's API."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from bot.callbacks import NewCustomerCallback
from bot.db import make_sessionmaker
from bot.sandbox.app import Controls, Persona, create_app
from bot.sandbox.server import serving
from bot.sandbox.telegram import BotApi
from models import Customer, Role
from services.tokens import create_token
from services.users import add_user
from tests.conftest import REDIS_URL, require_redis
from tests.test_webhook import free_port

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "777001:two-instances"
SECRET = "two-Instances-secret"
API_SECRET = "two-instances-api-secret"
REP = 601
pytestmark = [pytest.mark.postgres, pytest.mark.redis]


def _instance(port: int, api_url: str, db_url: str, data: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in ("BOT_TOKEN", "WEBHOOK_URL", "ADMIN_IDS")}
    env.update(BOT_TOKEN=TOKEN, BOT_API_URL=api_url, DATABASE_URL=db_url, REDIS_URL=REDIS_URL,
               WEBHOOK_URL=f"http://127.0.0.1:{port}/hooks/telegram", WEBHOOK_SECRET=SECRET, HTTP_HOST="127.0.0.1",
               HTTP_PORT=str(port), DATA_DIR=str(data), FIELDCRM_NO_BOOTSTRAP="1", LOG_LEVEL="WARNING",
               DEFAULT_LANGUAGE="en", PYTHONUNBUFFERED="1", API_SECRET=API_SECRET,
               FIELDCRM_LOOKUP_SYNC_SECONDS="3600")  # no poll in the test's time: only Redis can tell the other
    data.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen([sys.executable, str(ROOT / "main.py"), "run", "--role", "bot"], cwd=data, env=env,
                            stdout=(data / "out.log").open("w"), stderr=subprocess.STDOUT)


async def _healthy(port: int, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 90
    async with httpx.AsyncClient() as http:
        while time.monotonic() < deadline:
            assert process.poll() is None, log.read_text()
            try:
                if (await http.get(f"http://127.0.0.1:{port}/healthz", timeout=2)).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
    raise AssertionError("instance did not start:\n" + log.read_text())


async def test_a_conversation_hops_between_two_bot_instances(pg_url, tmp_path):
    require_redis()
    import redis.asyncio as aioredis

    client = aioredis.from_url(REDIS_URL)
    await client.flushdb()
    from bot.db import make_engine

    engine = make_engine(pg_url)
    sessions = make_sessionmaker(engine)
    async with sessions() as session:
        await add_user(session, name="Lee", role=Role.rep, telegram_id=REP, language="en")
        _row, erp_token = await create_token(session, API_SECRET.encode(), "erp", scope="write")
        await session.commit()
    api = BotApi(TOKEN)
    stand_in = create_app(api, Controls(personas=[Persona(REP, "Lee", "rep", "en")]))
    ports = [free_port(), free_port()]
    processes: list[subprocess.Popen] = []
    try:
        async with serving(stand_in) as api_url:
            for n, port in enumerate(ports):
                processes.append(_instance(port, api_url, pg_url, tmp_path / f"instance{n}"))
            for n, (port, process) in enumerate(zip(ports, processes)):
                await _healthy(port, process, tmp_path / f"instance{n}" / "out.log")

            def bot_messages() -> list[dict]:
                return [m for m in api.chats[REP].messages.values() if m["from"].get("is_bot")]

            async def step(instance: int, *, text: str | None = None, tap: str | None = None) -> dict:
                """Deliver the rep's next action to one instance; the bot's reply to it."""
                api.webhook = {"url": f"http://127.0.0.1:{ports[instance]}/hooks/telegram", "secret_token": SECRET}
                before = len(bot_messages())
                if text is not None:
                    await api.user_message(REP, text=text)
                else:
                    await api.user_tap(REP, bot_messages()[-1]["message_id"], tap)
                deadline = time.monotonic() + 30
                while len(bot_messages()) <= before and time.monotonic() < deadline:
                    await asyncio.sleep(0.05)
                assert len(bot_messages()) > before, f"no reply from instance {instance}"
                return bot_messages()[-1]

            assert "main phone number" in (await step(0, text="/new 双实例贸易有限公司"))["text"]
            # Instance 1 never saw the /new: it knows the rep is at the phone step only from Redis (without the
            # shared state it would look the number up as a customer's phone).
            assert "Which region" in (await step(1, text="13812345678"))["text"]
            assert "Where do things stand" in (await step(0, tap=NewCustomerCallback(step="region", value="0")
                                                          .pack()))["text"]
            await step(1, tap=NewCustomerCallback(step="stage", value="interested").pack())
            await step(0, tap=NewCustomerCallback(step="strategy", value="0").pack())
            deadline = time.monotonic() + 30  # the card follows the first reply within the same update
            while not any("双实例贸易有限公司" in (m.get("text") or "") for m in bot_messages()[-2:]) \
                    and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)  # the update's transaction commits just after its last reply
            # Instance 0 created it; instance 1 finds it by a typo'd part of the name at once (it was told
            # through Redis; its own poll would take up to 30 s — set to an hour here).
            found = await step(1, text="双实例贸")
            assert "双实例贸易有限公司" in found["text"], found
            # An ERP job creates a customer through instance 0's API; instance 1 finds it by part of its name.
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{ports[0]}", timeout=30) as http:
                created = await http.post("/api/v1/customers", headers={"Authorization": f"Bearer {erp_token}"},
                                          json={"external_id": "ERP-9", "name": "青岛海川仪器有限公司",
                                                "owner": "Lee"})
            assert created.status_code == 200, created.text
            # Told through Redis beside the API's answer: a moment, not the poll's hour (a few tries on a busy
            # machine).
            for _attempt in range(6):
                found = await step(1, text="海川仪器")
                if "青岛海川仪器有限公司" in found["text"]:
                    break
                await asyncio.sleep(0.5)
            assert "青岛海川仪器有限公司" in found["text"], found
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        await client.flushdb()
        await client.aclose()
    async with sessions() as session:
        made = (await session.execute(select(Customer).where(Customer.name == "双实例贸易有限公司"))).scalars().all()
    await engine.dispose()
    assert len(made) == 1 and made[0].phone == "13812345678" and made[0].stage == "interested"
