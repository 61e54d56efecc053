"""Long work beside the bot: one thread with its own event loop and its own database engine.

Rule "long work never holds the bot's loop" (issue 18): a year's report at 100k customers, the reminder
scan, the digests and the managers' reports take seconds of Python; on the bot's event loop they froze
every other user's reply for that long (p99 5.6 s under load). They run here instead. The bot's loop only
shares the interpreter with this thread: it waits at most one switch interval (`SWITCH_INTERVAL`) for
the interpreter lock each time it has something to do, so replies stay within milliseconds of normal.

Work is an `async def work(sessions)` taking the sessionmaker of this thread's own engine (an engine and
its connections belong to one event loop). Objects passed in and out must not be database rows bound to
the other loop's session: pass ids and plain values (a `Viewer`, dates) and return plain results (a
`Report`). Context variables (the user's language for gettext) travel with the call.

A database only the caller's engine can see (SQLite in memory, the tests' default) cannot be opened from
another engine: then the work simply runs on the caller's loop, as before.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import weakref
from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.db import make_engine, make_sessionmaker

log = logging.getLogger("fieldcrm.background")
T = TypeVar("T")
Work = Callable[[async_sessionmaker[AsyncSession]], Awaitable[T]]

# The bot's loop waits this long at most for the interpreter while the background thread computes
# (Python's default is 5 ms; a reply takes a dozen such hand-overs: its database calls run in aiosqlite's
# thread and come back).
SWITCH_INTERVAL = 0.001


def in_memory(engine: AsyncEngine) -> bool:
    url = engine.url
    return url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:")


class Background:
    """The background thread (started at the first `run`, stopped by `close`)."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], *, name: str = "fieldcrm-background") -> None:
        self.caller_sessions = sessions
        engine = sessions.kw["bind"]
        self.inline = in_memory(engine)
        self._url = engine.url.render_as_string(hide_password=False)
        self._name = name
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._engine: AsyncEngine | None = None
        self._sessions: async_sessionmaker[AsyncSession] | None = None
        self.busy = 0  # pieces of work under way (for /healthz and tests)

    def _start(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                self._engine = make_engine(self._url)
                self._sessions = make_sessionmaker(self._engine)
                self._thread = threading.Thread(target=loop.run_forever, name=self._name, daemon=True)
                self._thread.start()
                self._loop = loop
                if sys.getswitchinterval() > SWITCH_INTERVAL:
                    sys.setswitchinterval(SWITCH_INTERVAL)
            return self._loop

    async def run(self, work: Work[T]) -> T:
        """Do `work` in the background thread and wait for its result (an exception is raised here).
        Cancelling the wait cancels the work."""
        if self.inline:
            return await work(self.caller_sessions)
        loop = self._start()
        self.busy += 1
        try:
            return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(work(self._sessions), loop))
        finally:
            self.busy -= 1

    async def close(self) -> None:
        """Stop the thread after disposing of its engine (work still running is cancelled)."""
        with self._lock:
            loop, thread, engine = self._loop, self._thread, self._engine
            self._loop = self._thread = self._engine = self._sessions = None
        if loop is None:
            return

        async def finish() -> None:
            for task in [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]:
                task.cancel()
            if engine is not None:
                await engine.dispose()

        try:
            await asyncio.wait_for(asyncio.wrap_future(asyncio.run_coroutine_threadsafe(finish(), loop)), 10)
        except Exception:  # a stuck thread is a daemon: the process still exits
            log.exception("stopping the background thread")
        loop.call_soon_threadsafe(loop.stop)
        await asyncio.to_thread(thread.join, 10)
        if not thread.is_alive():
            loop.close()


_PLACES: weakref.WeakKeyDictionary[async_sessionmaker, Background] = weakref.WeakKeyDictionary()


def for_sessions(sessions: async_sessionmaker[AsyncSession]) -> Background:
    """The one background thread of this database in this process (the bot's reports and the scheduler's
    jobs share it; it starts when first used)."""
    place = _PLACES.get(sessions)
    if place is None:
        place = _PLACES[sessions] = Background(sessions)
    return place


async def close_all() -> None:
    """Stop every background thread this process started (at shutdown)."""
    for place in list(_PLACES.values()):
        await place.close()
