"""Conversation state that moves with the database transaction.

A handler that saves a visit and then clears the conversation used to clear it in Redis (or memory) at
once, while the visit waited for the update's commit: a crash in between lost the visit, and the
redelivered update then found no conversation to finish. Here every state change made while an update
is handled is held back (`Buffered` over the real storage) and written only after the update's
transaction committed (bot.middlewares.DatabaseMiddleware); a failed update changes neither the
database nor the conversation. Reads inside the update see its own changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import json
import logging
from collections.abc import AsyncGenerator, Mapping
from contextlib import asynccontextmanager
from contextvars import ContextVar
from typing import Any

from aiogram.fsm.state import State
from aiogram.fsm.storage.base import BaseEventIsolation, BaseStorage, DefaultKeyBuilder, StateType, StorageKey
from aiogram.fsm.storage.memory import SimpleEventIsolation

log = logging.getLogger("fieldcrm.fsm")
CHAT_LOCK_LEASE = 15.0  # seconds a chat's Redis lock outlives a holder that stopped renewing it

PENDING: ContextVar[dict[StorageKey, dict[str, Any]] | None] = ContextVar("pending_fsm_changes", default=None)


class Buffered(BaseStorage):
    def __init__(self, inner: BaseStorage) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:  # e.g. `.redis` of RedisStorage
        return getattr(self.inner, name)

    async def set_state(self, key: StorageKey, state: StateType = None) -> None:
        pending = PENDING.get()
        if pending is None:
            await self.inner.set_state(key, state)
        else:
            pending.setdefault(key, {})["state"] = state.state if isinstance(state, State) else state

    async def get_state(self, key: StorageKey) -> str | None:
        change = (PENDING.get() or {}).get(key, {})
        return change["state"] if "state" in change else await self.inner.get_state(key)

    async def set_data(self, key: StorageKey, data: Mapping[str, Any]) -> None:
        pending = PENDING.get()
        if pending is None:
            await self.inner.set_data(key, data)
        else:
            pending.setdefault(key, {})["data"] = copy.deepcopy(dict(data))

    async def get_data(self, key: StorageKey) -> dict[str, Any]:
        change = (PENDING.get() or {}).get(key, {})
        return copy.deepcopy(change["data"]) if "data" in change else await self.inner.get_data(key)

    async def close(self) -> None:
        await self.inner.close()


async def write_pending(storage: BaseStorage, pending: dict[StorageKey, dict[str, Any]]) -> None:
    """After the commit: the conversation changes the update made."""
    inner = storage.inner if isinstance(storage, Buffered) else storage
    for key, change in pending.items():
        if "state" in change:
            await inner.set_state(key, change["state"])
        if "data" in change:
            await inner.set_data(key, change["data"])


def pack(pending: dict[StorageKey, dict[str, Any]]) -> str | None:
    """An update's conversation changes as text, kept with its id in the update ledger
    (services.updates): a redelivered copy writes them again when the process died after the commit and
    before `write_pending` (None: the update changed no conversation)."""
    if not pending:
        return None
    return json.dumps([[dataclasses.asdict(key), change] for key, change in pending.items()], ensure_ascii=False)


def unpack(text: str | None) -> dict[StorageKey, dict[str, Any]]:
    return {StorageKey(**key): change for key, change in json.loads(text)} if text else {}


class OrderedIsolation(BaseEventIsolation):
    """One chat's updates one at a time and in arrival order: a first-come-first-served lock in this
    process (asyncio.Lock wakes its waiters in order), then, with several instances, the shared Redis
    lock. Redis's lock alone keeps them apart but not in order: its waiters poll, and after a spell
    offline a rep's queued "tap, note, tap, note" came out shuffled (found by tests/test_kill.py)."""

    def __init__(self, shared: BaseEventIsolation | None = None) -> None:
        self.local, self.shared = SimpleEventIsolation(), shared

    @asynccontextmanager
    async def lock(self, key: StorageKey) -> AsyncGenerator[None, None]:
        async with self.local.lock(key):
            if self.shared is None:
                yield
            else:
                async with self.shared.lock(key):
                    yield

    async def close(self) -> None:
        await self.local.close()
        if self.shared is not None:
            await self.shared.close()


class LeasedRedisIsolation(BaseEventIsolation):
    """Rule "a chat's lock lives only as long as its holder": across instances, one chat's updates run
    under a Redis lock held as a short lease (CHAT_LOCK_LEASE) that the holder renews every third of it
    while the update runs, however long that is (a year's report for a large team).

    Before, the lock was taken for a fixed 300 s so that long updates kept it: a bot killed while it
    handled a rep's update (kill -9, the OOM killer, a lost machine) left it behind, and the restarted bot
    held every later update of that chat for up to five minutes (found by tests/test_kill.py under load).
    Now a dead holder's lease runs out within CHAT_LOCK_LEASE seconds. A live holder whose event loop
    stalled past the lease loses it; that is logged (the database still keeps the updates apart: each has
    its own transaction and the update ledger refuses a second copy)."""

    def __init__(self, redis: Any, key_builder: Any = None) -> None:
        self.redis = redis
        self.key_builder = key_builder or DefaultKeyBuilder()

    @asynccontextmanager
    async def lock(self, key: StorageKey) -> AsyncGenerator[None, None]:
        from redis.asyncio.lock import Lock
        from redis.exceptions import LockError

        lease = CHAT_LOCK_LEASE
        held = Lock(self.redis, self.key_builder.build(key, "lock"), timeout=lease, sleep=0.05)
        await held.acquire()
        renewal = asyncio.create_task(self._renew(held, lease), name="chat-lock-renewal")
        try:
            yield
        finally:
            renewal.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewal
            try:
                await held.release()
            except LockError:
                log.warning("the lock of chat %s ran out while its update was handled (the loop stalled "
                            "for more than %.0f s)", key.chat_id, lease)

    @staticmethod
    async def _renew(held: Any, lease: float) -> None:
        from redis.exceptions import LockError, RedisError

        while True:
            await asyncio.sleep(lease / 3)
            try:
                await held.reacquire()
            except LockError:
                return  # already lost: reported at release
            except RedisError as error:  # Redis away for a moment: the next renewal tries again
                log.warning("could not renew a chat lock: %s", error)

    async def close(self) -> None:
        pass
