"""A chat's lock across instances (Redis) lives only as long as the bot that holds it.

Found by tests/test_kill.py under load: a bot killed (kill -9) while it handled a rep's update left that
chat's Redis lock behind with its 300 s expiry, so the restarted bot held every later update of that rep
for five minutes — the rep's chat looked dead. The lock is now a short lease that the holder renews while
the update runs: a killed holder's lease runs out within seconds, a live one keeps it as long as it needs.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from aiogram.fsm.storage.base import StorageKey

from bot.app import events_isolation
from tests.conftest import REDIS_URL, require_redis

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.redis
KEY = StorageKey(bot_id=424242, chat_id=9101, user_id=9101)
LOCK = "fsm:9101:9101:lock"  # the name aiogram's key builder gives that chat's lock

HOLDER = """
import asyncio, sys
from aiogram.fsm.storage.base import StorageKey
from aiogram.fsm.storage.redis import RedisStorage
import bot.fsm
from bot.app import events_isolation

bot.fsm.CHAT_LOCK_LEASE = float(sys.argv[2])

async def main():
    isolation = events_isolation(RedisStorage.from_url(sys.argv[1]))
    async with isolation.lock(StorageKey(bot_id=424242, chat_id=9101, user_id=9101)):
        print("held", flush=True)
        await asyncio.sleep(3600)  # a handler in the middle of its work, when the kill comes

asyncio.run(main())
"""


async def _storage():
    from aiogram.fsm.storage.redis import RedisStorage

    storage = RedisStorage.from_url(REDIS_URL)
    await storage.redis.delete(LOCK)
    return storage


async def test_a_killed_bots_chat_lock_runs_out_in_seconds_not_minutes():
    require_redis()
    storage = await _storage()
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, REDIS_URL, "2"], cwd=ROOT,
                              stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        line = await asyncio.wait_for(asyncio.to_thread(holder.stdout.readline), 60)
        assert line.strip() == b"held"
        await asyncio.sleep(2.5)  # longer than the lease: a live holder keeps its lock by renewing it
        assert await storage.redis.exists(LOCK)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
    started = time.monotonic()

    async def next_update() -> float:  # the restarted bot, the same chat
        async with events_isolation(storage).lock(KEY):
            return time.monotonic() - started

    waited = await asyncio.wait_for(next_update(), 15)  # before: 300 s
    assert waited < 5, f"the chat stayed locked {waited:.1f} s after its holder was killed"
    assert not await storage.redis.exists(LOCK)  # released after use
    await storage.close()


async def test_a_live_holder_keeps_the_chat_while_its_update_runs_past_the_lease(monkeypatch):
    require_redis()
    import bot.fsm

    monkeypatch.setattr(bot.fsm, "CHAT_LOCK_LEASE", 1.2)  # renewed every 0.4 s
    storage = await _storage()
    first, second = events_isolation(storage), events_isolation(storage)  # two instances of the bot
    order: list[str] = []

    async def long_update():
        async with first.lock(KEY):
            order.append("long update starts")
            await asyncio.sleep(3.0)  # two and a half leases
            order.append("long update ends")

    async def next_update():
        await asyncio.sleep(0.2)
        async with second.lock(KEY):
            order.append("next update")

    await asyncio.gather(long_update(), next_update())
    assert order == ["long update starts", "long update ends", "next update"]
    await storage.close()


async def test_redis_failing_at_the_release_does_not_turn_a_saved_update_into_an_error(monkeypatch):
    """The update has committed when its lock is released: a Redis error then is logged, not raised (the
    rep would read "nothing was saved" for a call that was saved); the lease runs out by itself."""
    require_redis()
    from redis.asyncio.lock import Lock
    from redis.exceptions import ConnectionError as RedisConnectionError

    storage = await _storage()

    async def unreachable(self):
        raise RedisConnectionError("Redis went away")

    monkeypatch.setattr(Lock, "release", unreachable)
    done = []
    async with events_isolation(storage).lock(KEY):
        done.append("update handled")
    assert done == ["update handled"]
    assert 0 < await storage.redis.ttl(LOCK) <= 15  # left to its lease
    await storage.redis.delete(LOCK)
    await storage.close()
