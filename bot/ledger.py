"""The ids of updates that wrote nothing, recorded together a moment later (SQLite only; issue 18).

Rule "every update is applied at most once" (services.updates) records each update's id in its own
transaction. On SQLite that insert takes the database's one write lock, so twenty reps looking customers
up took it twenty times a second, each holding it across a turn of the busy event loop, and queued behind
one another and behind the scheduled jobs (the load bench: lookups waiting 1–6 s to record themselves).
An update that wrote nothing has nothing to keep atomic with its id: its id is kept here and written with
the others in one short transaction every `INTERVAL` seconds. Until then `in` answers for it, so a
redelivered copy is still skipped; lost by a crash before the write, a redelivery repeats only a reply
that changed nothing. Updates that wrote something record their id in their own transaction, as before;
on PostgreSQL (no single write lock) every update does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.updates import record_many

log = logging.getLogger("fieldcrm")

INTERVAL = 0.5  # s between writes while ids are waiting


class DeferredIds:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions
        self.waiting: dict[int, str | None] = {}  # update id → its conversation change (bot.fsm.pack)
        self.writing: dict[int, str | None] = {}
        self._task: asyncio.Task | None = None

    def __contains__(self, update_id: int) -> bool:
        return update_id in self.waiting or update_id in self.writing

    def conversation(self, update_id: int) -> str | None:
        """The conversation change a waiting update made (for its redelivered copy to write again)."""
        return self.waiting.get(update_id, self.writing.get(update_id))

    def add(self, update_id: int, conversation: str | None = None) -> None:
        self.waiting[update_id] = conversation
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._keep_writing(), name="fieldcrm-deferred-update-ids")

    async def _keep_writing(self) -> None:
        while self.waiting:
            await asyncio.sleep(INTERVAL)
            await self.flush()

    async def flush(self) -> None:
        """Write the waiting ids in one transaction; on failure they wait for the next try."""
        if not self.waiting:
            return
        ids, self.waiting = self.waiting, {}
        self.writing.update(ids)
        try:
            async with self.sessions() as session, session.begin():
                await record_many(session, ids)
        except Exception:
            log.exception("recording %d handled update ids failed; trying again", len(ids))
            self.waiting.update(ids)
            await asyncio.sleep(INTERVAL)
        finally:
            for update_id in ids:
                self.writing.pop(update_id, None)

    async def close(self) -> None:
        """At shutdown: stop the writer and write what waits."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush()
