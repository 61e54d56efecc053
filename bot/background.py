"""Long work beside the bot: a worker process with its own event loop and its own database engine.

Rule "long work never holds the bot's loop" (issue 18): a year's report at 100k customers, the reminder
scan, the digests, the managers' reports and the RFM scoring take seconds of Python. On the bot's event
loop they froze every other user's reply for that long (p99 5.6 s under load). In a thread they still
shared the interpreter lock with the bot: measured with py-spy during a report and a fast-forward, the
bot's thread held the lock only 35 % of the time and 20 reps' lookups queued up for seconds. So they run
in a separate process (started at the first use, one per bot process, kept for the next piece of work):
the bot's process keeps its core.

Work is an `async def work(sessions)` taking the sessionmaker of the worker's engine for the same
database: it must be picklable — a module-level function, or a `functools.partial` of one with picklable
arguments (ids, a `Viewer`, dates; never database rows). Its result comes back pickled (a `Report`, a
count). The sandbox's clock offset (models.CLOCK) is carried with each call, so the worker's "now" is the
bot's. Cancelling the wait does not stop work already under way in the worker (it finishes there; every
job writes keyed rows in short transactions, so a repeat is harmless); `close` ends the worker.

The worker's loop keeps running between pieces of work: what a piece of work leaves to do once its result
is ready (a report is stored for the next request after the reply, services.reports `store_later`) is done
there while the bot already answers.

Work goes to a lane: "work" (reports, jobs), "cards" (business-card reading, bot.namecard) or "route"
(/route's solver, handlers.route): each lane is a worker process of its own, started when first used, so a
rep's card is read in a second or two even while a manager's workbook takes twenty — a card waiting behind a
report held its update, and long polling with it (bot.detached) — and a route's second of solving does not
share the bot's interpreter lock (in a thread it halved the speed of everyone else's replies meanwhile).

A database only the caller's engine can see (SQLite in memory, some tests) cannot be opened from
another process: then the work simply runs on the caller's loop, as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import sys
import threading
import time
import weakref
from collections.abc import Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from datetime import timedelta
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

log = logging.getLogger("fieldcrm.background")
WORKER_NICENESS = 10  # the worker's scheduling priority below the bot's (Unix nice)
T = TypeVar("T")
Work = Callable[[async_sessionmaker[AsyncSession]], Awaitable[T]]


def in_memory(engine: AsyncEngine) -> bool:
    url = engine.url
    return url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:")


# ------------------------------------------------------------------------------------ in the worker process

_LOOP: asyncio.AbstractEventLoop | None = None
_ENGINES: dict[str, tuple[AsyncEngine, async_sessionmaker[AsyncSession]]] = {}


def _start_worker(level: int, fmt: str) -> None:
    """The worker's set-up: logging like the bot's, its own event loop (kept between pieces of work)."""
    global _LOOP
    import signal

    from bot.logs import configure

    # Ctrl+C in a terminal reaches the whole process group: the bot's process stops the worker itself
    # (close_all), after letting the jobs under way finish.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Long work yields the processor to the bot's process when both want it: a person waits for a reply,
    # nobody waits to the second for a scan. (The load bench on 2 cores: the bot's process was busy in 59 of
    # 60 samples while the worker ran the scan and a workbook.)
    with contextlib.suppress(AttributeError, OSError):  # os.nice: not on Windows
        os.nice(WORKER_NICENESS)
    configure(logging.getLevelName(level), fmt)
    logging.getLogger("alembic").setLevel(logging.WARNING)  # its import-time set-up lines are noise here
    # The loop runs all the time, in a thread of its own: what a piece of work leaves to do after its
    # result (storing a report it made, services.reports) goes on between pieces of work.
    _LOOP = asyncio.new_event_loop()
    threading.Thread(target=_LOOP.run_forever, name="worker-loop", daemon=True).start()
    threading.Thread(target=_end_with_parent, args=(os.getppid(),), name="parent-watch", daemon=True).start()


def _end_with_parent(parent: int, every: float = 1.0) -> None:
    """The worker ends when the bot's process is gone. A bot killed outright (kill -9, the OOM killer)
    cannot stop it, and the pool's queue never tells it (it holds that pipe's other end itself): before,
    each such worker lived on, idle, with its database connections and memory (found after the kill test:
    one orphan per killed bot)."""
    while os.getppid() == parent:
        time.sleep(every)
    os._exit(0)


def _sessions_for(url: str) -> async_sessionmaker[AsyncSession]:
    if url not in _ENGINES:
        from bot.db import make_engine, make_sessionmaker

        engine = make_engine(url)
        sessions = make_sessionmaker(engine)
        sessions.outlives_work = True  # this loop runs on after a piece of work returns (services.reports)
        _ENGINES[url] = (engine, sessions)
    return _ENGINES[url][1]


def _work_in_worker(url: str, work: Work[T], clock_offset: timedelta) -> T:
    from models.common import CLOCK

    CLOCK.offset = clock_offset  # the bot's "now" (the sandbox moves it)
    return asyncio.run_coroutine_threadsafe(work(_sessions_for(url)), _LOOP).result()


def _forget_in_worker(url: str) -> None:
    engine, _ = _ENGINES.pop(url, (None, None))
    if engine is not None:
        async def forget() -> None:
            reports = sys.modules.get("services.reports")  # (never imported just for this: the cards lane)
            if reports is not None:
                await reports.stored()  # the reports still being stored, first
            await engine.dispose()
        asyncio.run_coroutine_threadsafe(forget(), _LOOP).result()


# ------------------------------------------------------------------------------------ in the bot's process

LANES = ("work", "cards", "route")
_POOLS: dict[str, ProcessPoolExecutor] = {}
_POOL_LOCK = threading.Lock()


def _pool(lane: str = "work") -> ProcessPoolExecutor:
    with _POOL_LOCK:
        if lane not in _POOLS:
            root = logging.getLogger()
            fmt = "json" if any(type(h.formatter).__name__ == "JsonFormatter" for h in root.handlers) else "text"
            _POOLS[lane] = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                                               initializer=_start_worker, initargs=(root.level, fmt))
            log.info("background worker process starting for %s (long work runs there, beside the bot)", lane)
        return _POOLS[lane]


def _discard(pool: ProcessPoolExecutor) -> None:
    with _POOL_LOCK:
        for lane, known in list(_POOLS.items()):
            if known is pool:
                del _POOLS[lane]
    pool.shutdown(wait=False, cancel_futures=True)


def _end_stuck(pool: ProcessPoolExecutor) -> None:
    """End the worker of work that ran past its time (only that pool: a lane's newer worker is left alone);
    the lane's next work starts a new one."""
    if getattr(pool, "ended_as_stuck", False):
        return
    pool.ended_as_stuck = True
    with _POOL_LOCK:
        lanes = [lane for lane, known in _POOLS.items() if known is pool]
        for lane in lanes:
            del _POOLS[lane]
    log.warning("background work ran past its time; ending its worker (%s), the next work starts a new one",
                ", ".join(lanes) or "already replaced")
    _end_processes(pool, cancel_futures=False)


def _end_processes(pool: ProcessPoolExecutor, *, cancel_futures: bool) -> list:
    """Shut the pool down and terminate its worker process now (not waiting for the work under way there);
    the processes, to join."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=cancel_futures)
    for process in processes:
        if process.is_alive():
            process.terminate()
    return processes


class Background:
    """Where this database's long work runs (see the module's docstring)."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.caller_sessions = sessions
        engine = sessions.kw["bind"]
        self.inline = in_memory(engine)
        self._url = engine.url.render_as_string(hide_password=False)
        self.used: set[str] = set()  # the lanes that opened this database

    async def run(self, work: Work[T], *, lane: str = "work", timeout: float | None = None) -> T:
        """Do `work` in the lane's worker process and wait for its result (its exception is raised here).

        With `timeout`, work not done by then raises TimeoutError and its worker is ended (it is stuck: a
        card that reads for a minute), so the lane's next work does not queue behind it. Work of other
        callers that was in that worker is tried again in a new one, with its time counted afresh."""
        if self.inline:
            return await asyncio.wait_for(work(self.caller_sessions), timeout)
        from models.common import CLOCK

        self.used.add(lane)
        died = False
        while True:
            pool = _pool(lane)
            try:  # submit raises too when the pool already knows its worker died
                future = asyncio.wrap_future(pool.submit(_work_in_worker, self._url, work, CLOCK.offset))
                return await asyncio.wait_for(future, timeout)
            except TimeoutError:
                _end_stuck(pool)
                raise
            except BrokenProcessPool:
                # The worker died (killed, out of memory): a new one is started and the work tried once more —
                # every piece of work here reads, or writes keyed rows, so a repeat is harmless. Not after a
                # shutdown (close_all), which ends the worker on purpose. A worker ended because another
                # caller's work was stuck in it says nothing about this work: tried again in any case.
                _discard(pool)
                if getattr(pool, "stopped_on_purpose", False):
                    raise
                if getattr(pool, "ended_as_stuck", False):
                    continue
                if died:
                    raise
                died = True
                log.error("the background worker process died; starting a new one and trying again")

    async def close(self) -> None:
        """Let the workers close their connections to this database."""
        lanes, self.used = self.used, set()
        for lane in lanes:
            pool = _POOLS.get(lane)
            if pool is None:
                continue
            try:
                await asyncio.wait_for(asyncio.get_running_loop().run_in_executor(
                    pool, _forget_in_worker, self._url), 10)
            except Exception:  # a worker that is gone or stuck: nothing left to close
                log.warning("the background worker (%s) did not close its database connections", lane)


_PLACES: weakref.WeakKeyDictionary[async_sessionmaker, Background] = weakref.WeakKeyDictionary()


def for_sessions(sessions: async_sessionmaker[AsyncSession]) -> Background:
    """This database's Background in this process (the bot's reports and the scheduler's jobs share it)."""
    place = _PLACES.get(sessions)
    if place is None:
        place = _PLACES[sessions] = Background(sessions)
    return place


async def close_all(*, stop_worker: bool = False) -> None:
    """Close the workers' database connections; with `stop_worker` (shutdown), end the worker processes too
    (work still under way there is cut off: its transaction rolls back)."""
    for place in list(_PLACES.values()):
        if stop_worker:  # the worker's end closes them (asking would wait behind the work under way)
            place.used = set()
        else:
            await place.close()
    if stop_worker:
        with _POOL_LOCK:
            pools = list(_POOLS.values())
            _POOLS.clear()
        processes = []
        for pool in pools:
            pool.stopped_on_purpose = True
            processes += _end_processes(pool, cancel_futures=True)
        for process in processes:
            await asyncio.to_thread(process.join, 5)


def worker_pid(lane: str = "work") -> int | None:
    """The lane's worker process id (tests, /healthz), None before it started."""
    pool = _POOLS.get(lane)
    processes = list((getattr(pool, "_processes", None) or {}).keys()) if pool is not None else []
    return processes[0] if processes else None
