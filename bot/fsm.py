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
import copy
import dataclasses
import json
import logging
import time
from collections.abc import AsyncGenerator, Mapping
from contextlib import asynccontextmanager
from contextvars import ContextVar
from typing import Any

from aiogram.fsm.state import State
from aiogram.fsm.storage.base import BaseEventIsolation, BaseStorage, DefaultKeyBuilder, StateType, StorageKey
from aiogram.fsm.storage.memory import SimpleEventIsolation

log = logging.getLogger("fieldcrm.fsm")
CHAT_LOCK_LEASE = 15.0  # seconds a chat's Redis lock outlives a holder that stopped renewing it
CHAT_LOCK_MOST = 300.0  # seconds an update may hold its chat (one stuck for ever must not hold it for ever)

PENDING: ContextVar[dict[StorageKey, dict[str, Any]] | None] = ContextVar("pending_fsm_changes", default=None)


MARK_KEEP = 3 * 24 * 3600  # s a conversation's mark is kept (as long as the update ledger keeps ids)


class Buffered(BaseStorage):
    def __init__(self, inner: BaseStorage) -> None:
        self.inner = inner
        self.marks: dict[StorageKey, int] = {}  # memory storage: the marks live (and die) with the state

    async def applied(self, key: StorageKey) -> int:
        """The id of the newest update whose change of this conversation was written (0: none known)."""
        redis = getattr(self.inner, "redis", None)
        if redis is None:
            return self.marks.get(key, 0)
        value = await redis.get(self.inner.key_builder.build(key, "applied"))
        return int(value) if value else 0

    async def mark(self, key: StorageKey, update_id: int) -> None:
        redis = getattr(self.inner, "redis", None)
        if redis is None:
            self.marks[key] = max(self.marks.get(key, 0), update_id)
        elif update_id > await self.applied(key):  # under the chat's lock: nobody writes it meanwhile
            await redis.set(self.inner.key_builder.build(key, "applied"), update_id, ex=MARK_KEEP)

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


async def write_pending(storage: BaseStorage, pending: dict[StorageKey, dict[str, Any]],
                        update_id: int | None = None, *, replay: bool = False) -> None:
    """After the commit: the conversation changes the update made, each conversation marked with the
    update's id. `replay`: the changes of an update handled before, kept with its id in the ledger and
    written again for its redelivered copy — only to a conversation no newer update has changed since (a
    late copy, after the chat's next update was handled, must not wind the conversation back)."""
    buffered = storage if isinstance(storage, Buffered) else None
    inner = storage.inner if buffered is not None else storage
    for key, change in pending.items():
        if replay and (buffered is None or update_id is None or await buffered.applied(key) >= update_id):
            continue
        if "state" in change:
            await inner.set_state(key, change["state"])
        if "data" in change:
            await inner.set_data(key, change["data"])
        if buffered is not None and update_id is not None:
            await buffered.mark(key, update_id)


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
    while the update runs, up to CHAT_LOCK_MOST (an update stuck for ever does not hold its chat for ever).
    Redis failing at the release is logged, not raised: the update is done and committed by then.

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
        from redis.exceptions import LockError, RedisError

        lease = CHAT_LOCK_LEASE
        held = Lock(self.redis, self.key_builder.build(key, "lock"), timeout=lease, sleep=0.05)
        await held.acquire()
        renewal = asyncio.create_task(self._renew(held, lease, key.chat_id), name="chat-lock-renewal")
        try:
            yield
        finally:
            renewal.cancel()
            await asyncio.wait({renewal})  # (never swallows a cancellation of this update's own task)
            try:
                await held.release()
            except LockError:
                log.warning("the lock of chat %s ran out while its update was handled (the event loop "
                            "stalled, or Redis could not be reached, for more than %.0f s)", key.chat_id, lease)
            except RedisError as error:  # the update is done (and committed): the lease runs out by itself
                log.warning("could not release the lock of chat %s: %s", key.chat_id, error)

    @staticmethod
    async def _renew(held: Any, lease: float, chat_id: int) -> None:
        from redis.exceptions import LockError, RedisError

        started = time.monotonic()
        while True:
            await asyncio.sleep(lease / 3)
            if time.monotonic() - started > CHAT_LOCK_MOST:
                log.warning("an update of chat %s has held its lock for %.0f s: no longer renewed, the chat's "
                            "other updates go on", chat_id, CHAT_LOCK_MOST)
                return
            try:
                await held.reacquire()
            except LockError:
                return  # already lost: reported at release
            except RedisError as error:  # Redis away for a moment: the next renewal tries again
                log.warning("could not renew a chat lock: %s", error)

    async def close(self) -> None:
        pass
