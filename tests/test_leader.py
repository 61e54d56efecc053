"""Scale-out (issue 16), against the real PostgreSQL (under CI=true it fails, never skips, when unreachable;
SQLite variants run everywhere):

- One scheduler: two worker processes (`python WORKER_SCRIPT`, jobs.leader + jobs.scheduler.run_as_leader)
  on one database — exactly one runs the scheduler; kill -9 it and the other takes over within
  TAKEOVER_BOUND seconds (retry every RETRY s in the test; the product's default is jobs.leader.RETRY_EVERY = 5 s,
  so ≤ about 6 s after a crash). PostgreSQL: advisory lock; SQLite: file lock. A leader whose lock is lost
  (its PostgreSQL session terminated, its lock file removed) stops its scheduler within CHECK + 2 s.
- Several senders sharing the outbox and Telegram's limits in Redis: tests/test_scale_out.py.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy import text
from sqlalchemy.engine import make_url

from bot.db import make_engine
from jobs.leader import Leadership
from jobs.scheduler import run_as_leader

ROOT = Path(__file__).resolve().parent.parent
RETRY, CHECK = 1.0, 1.0  # the workers' retry and check intervals in these tests
TAKEOVER_BOUND = 5.0  # seconds from kill -9 of the leader to the other worker's first job run

WORKER_SCRIPT = """
import asyncio, logging, os, signal, sys, time
from datetime import UTC, datetime, timedelta

sys.path.insert(0, {root!r})
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from jobs.leader import Leadership
from jobs.scheduler import run_as_leader

url, beats, retry, check = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(message)s")


def beat():  # the scheduler's job: who ran it, when
    with open(beats, "a") as fh:
        fh.write(f"{{os.getpid()}} {{time.time()}}\\n")


def create():
    scheduler = AsyncIOScheduler(timezone="UTC")
    scheduler.add_job(beat, IntervalTrigger(seconds=0.2), next_run_time=datetime.now(UTC))
    return scheduler


async def main():
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print("ready", flush=True)
    await run_as_leader(create, url, stop, leadership=Leadership(url, retry_every=retry, check_every=check))


asyncio.run(main())
"""


def _beats(path: Path) -> list[tuple[int, float]]:
    if not path.exists():
        return []
    found = []
    for line in path.read_text().splitlines():
        pid, _, at = line.partition(" ")
        if at:
            found.append((int(pid), float(at)))
    return found


def _wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout} s: {what}")


def test_one_worker_runs_the_scheduler_and_another_takes_over_when_it_is_killed(db_url, tmp_path):
    script, beats = tmp_path / "worker.py", tmp_path / "beats.txt"
    script.write_text(WORKER_SCRIPT.format(root=str(ROOT)))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    workers = {}
    try:
        for n in range(2):  # started together: they race for the lock
            log = (tmp_path / f"worker{n}.log").open("w")
            process = subprocess.Popen([sys.executable, str(script), db_url, str(beats), str(RETRY), str(CHECK)],
                                       stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp_path)
            workers[process.pid] = (process, tmp_path / f"worker{n}.log")
        _wait_for(lambda: _beats(beats), 30, "a worker runs the scheduler")
        time.sleep(2.5)  # both are up and the follower has tried at least twice
        assert all(p.poll() is None for p, _ in workers.values())
        runners = {pid for pid, _ in _beats(beats)}
        assert len(runners) == 1, f"the scheduler ran in {len(runners)} processes"
        [leader] = runners
        [follower] = set(workers) - {leader}
        assert "this worker is waiting: another one runs the scheduler" in workers[follower][1].read_text()

        os.kill(leader, signal.SIGKILL)
        killed_at = time.time()
        workers[leader][0].wait(timeout=10)
        first = _wait_for(lambda: [at for pid, at in _beats(beats) if pid == follower], TAKEOVER_BOUND + 10,
                          "the other worker takes over")[0]
        took = first - killed_at
        assert took <= TAKEOVER_BOUND, f"took over after {took:.1f} s"
        time.sleep(0.5)
        late = [at for pid, at in _beats(beats) if pid == leader and at > killed_at + 0.05]
        assert not late and {pid for pid, at in _beats(beats) if at > killed_at + 0.05} == {follower}
        assert "took over the scheduler" in workers[follower][1].read_text()

        workers[follower][0].send_signal(signal.SIGTERM)  # a clean stop: scheduler stopped, lock released
        assert workers[follower][0].wait(timeout=30) == 0
        assert "released the scheduler lock" in workers[follower][1].read_text()
    finally:
        for process, _ in workers.values():
            if process.poll() is None:
                process.kill()
                process.wait()


async def _lock_lost(db_url: str) -> None:
    """Take the leader's lock away behind its back: its PostgreSQL session ends, or its lock file goes."""
    url = make_url(db_url)
    if url.get_backend_name() == "postgresql":
        engine = make_engine(db_url)
        try:
            async with engine.begin() as conn:
                ended = await conn.scalar(text("SELECT count(pg_terminate_backend(pid)) FROM pg_locks "
                                               "WHERE locktype = 'advisory' AND database = "
                                               "(SELECT oid FROM pg_database WHERE datname = current_database())"))
            assert ended == 1
        finally:
            await engine.dispose()
    else:
        lock = Path(url.database).with_name(Path(url.database).name + ".scheduler.lock")
        assert lock.exists()
        lock.unlink()


async def test_a_leader_that_loses_its_lock_stops_its_scheduler_and_one_leads_again(db_url):
    loop = asyncio.get_running_loop()
    events: list[tuple[str, str, float]] = []
    stop = asyncio.Event()

    def run(name: str):
        def create() -> AsyncIOScheduler:
            return AsyncIOScheduler(timezone="UTC")

        def changed(scheduler) -> None:
            events.append((name, "start" if scheduler is not None else "stop", loop.time()))

        return asyncio.create_task(run_as_leader(
            create, db_url, stop, grace=1, on_change=changed,
            leadership=Leadership(db_url, retry_every=RETRY, check_every=CHECK, timeout=2)))

    def running() -> set[str]:
        state: dict[str, bool] = {}
        for name, what, _ in events:
            state[name] = what == "start"
        return {name for name, on in state.items() if on}

    async def until(condition, timeout: float, what: str) -> None:
        deadline = loop.time() + timeout
        while not condition():
            assert loop.time() < deadline, f"not within {timeout} s: {what}"
            await asyncio.sleep(0.02)

    first, second = run("a"), None
    try:
        await until(lambda: running() == {"a"}, 10, "a leads")
        second = run("b")
        await asyncio.sleep(2.5 * RETRY)
        assert running() == {"a"}  # b waits
        await _lock_lost(db_url)
        lost_at = loop.time()
        await until(lambda: ("a", "stop") in {(n, w) for n, w, _ in events}, CHECK + 2 + 1, "a stops")
        stopped_at = next(at for n, w, at in events if (n, w) == ("a", "stop"))
        assert stopped_at - lost_at <= CHECK + 2 + 0.5
        # Somebody leads again (b, or a once more), and in the end only one does.
        await until(lambda: len([e for e in events if e[1] == "start"]) >= 2, RETRY + CHECK + 5, "one leads again")
        await asyncio.sleep(2.5 * RETRY)
        assert len(running()) == 1
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*(t for t in (first, second) if t is not None)), 30)
    assert running() == set()


# --------------------------------------------------------------------------- several senders


MESSAGES, PRIVATE_CHATS, GROUP_CHATS = 300, 36, 4
GROUP_LIMIT, GROUP_WINDOW = 4, 2.0  # a group's window, scaled down from 20 per 60 s so it binds in the test
SLOW_EVERY, SLOW = 9, 1.3  # every 9th message takes 1.3 s to be accepted: longer than a private chat's gap
FLOODED = {"m0005", "m0123"}  # answered 429 retry_after=1 on their first try
_ids = itertools.count(10_000)


async def test_two_role_all_processes_on_one_database_never_both_schedule(db_url):
    """`run` (role all) schedules only while it leads, like a worker: a second `run` on the same database
    (by mistake, or beside a worker) waits, and takes over when the first stops."""
    from bot.app import create_bot
    from bot.db import make_sessionmaker
    from bot.runner import _Scheduling
    from bot.settings import Settings

    engine = make_engine(db_url)
    sessions = make_sessionmaker(engine)
    settings = Settings(bot_token="123:fake", database_url=db_url)
    bot = create_bot(settings)
    first = _Scheduling(bot, sessions, settings)
    for _ in range(100):
        if first.view.get_jobs():
            break
        await asyncio.sleep(0.05)
    second = _Scheduling(bot, sessions, settings)
    await asyncio.sleep(1.0)
    try:
        assert first.view.get_jobs(), "the first process leads and schedules"
        assert second.view.get_jobs() == [], "the second waits: nothing scheduled twice"
        await first.stop()
        for _ in range(200):  # a waiting process tries every 5 s (jobs.leader.RETRY_EVERY)
            if second.view.get_jobs():
                break
            await asyncio.sleep(0.05)
        assert second.view.get_jobs(), "the second took over"
    finally:
        await first.stop()
        await second.stop()
        await bot.session.close()
        await engine.dispose()
