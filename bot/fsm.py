"""Conversation state that moves with the database transaction.

A handler that saves a visit and then clears the conversation used to clear it in Redis (or memory) at
once, while the visit waited for the update's commit: a crash in between lost the visit, and the
redelivered update then found no conversation to finish. Here every state change made while an update
is handled is held back (`Buffered` over the real storage) and written only after the update's
transaction committed (bot.middlewares.DatabaseMiddleware); a failed update changes neither the
database nor the conversation. Reads inside the update see its own changes.
"""

from __future__ import annotations

import copy
from collections.abc import AsyncGenerator, Mapping
from contextlib import asynccontextmanager
from contextvars import ContextVar
from typing import Any

from aiogram.fsm.state import State
from aiogram.fsm.storage.base import BaseEventIsolation, BaseStorage, StateType, StorageKey
from aiogram.fsm.storage.memory import SimpleEventIsolation

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
