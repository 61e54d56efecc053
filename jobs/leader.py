"""Leadership: the scheduler runs in exactly one worker process at a time (issue 16).

Built on what the product already runs — the database — not on a coordination service of its own:

- PostgreSQL: a session-level advisory lock, `pg_try_advisory_lock(KEY)`, taken on a connection of its own
  (outside the engine's pool, autocommit, so no transaction stays open) and held for as long as this
  process leads. Advisory locks are per database, so deployments sharing a server do not meet. A process
  that does not get the lock tries again every `retry_every` seconds. When the leader dies (crash, kill -9,
  OOM kill) its socket closes and PostgreSQL releases the lock at once: the next try of a waiting process
  takes over — within `retry_every` seconds plus a connection. A leader host that vanishes without closing
  its socket (power loss, network cut) is noticed by the server's TCP keepalives, which the lock
  connection sets short (`KEEPALIVE`: about 10 + 3 × 5 s).
- The leader checks its lock connection every `check_every` seconds (`held`: a query that reads its own
  lock in pg_locks, within `timeout` seconds). If that fails, the server may already have handed the lock
  to another process: this process stops leading (jobs.scheduler.run_as_leader stops its scheduler) and
  waits again. Between the server dropping the lock and the old leader noticing, both may run the jobs for
  up to `check_every + timeout` seconds; every job writes keyed rows and the outbox claims rows under a
  lease, so that overlap repeats nothing.
- SQLite (one box; only one process can write anyway): an exclusive `fcntl.flock` on a file next to the
  database (`fieldcrm.sqlite3.scheduler.lock`), released by the kernel when the process dies — the same
  semantics. The file is never deleted; `held` also checks that the path still names the locked file (a
  deleted or replaced lock file would let a second process lock a new one). On a system without fcntl, or
  for an in-memory database (nobody else can open it), this process simply leads.

The lock needs a real session: behind PgBouncer in transaction mode, point this connection at PostgreSQL
directly (session pooling is fine).

Use:
    leadership = Leadership(engine)
    await leadership.acquire()      # waits; logs "this worker is waiting: another one runs the scheduler"
    ...                             # lead; call `await leadership.held()` now and then
    await leadership.release()
or `async with Leadership(engine): ...`, or jobs.scheduler.run_as_leader, which does all of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

log = logging.getLogger("fieldcrm.jobs")

# The scheduler's advisory lock: a fixed 64-bit key ("FCRMSCHD"), the same in every FieldCRM process.
SCHEDULER_KEY = int.from_bytes(b"FCRMSCHD", "big", signed=True)
RETRY_EVERY = 5.0  # seconds between tries of a waiting process: a dead leader is replaced within about this
CHECK_EVERY = 5.0  # seconds between the leader's checks of its lock
TIMEOUT = 5.0  # seconds a connect, a try or a check may take before it counts as failed
# Server-side keepalives on the lock connection: a leader host that vanished is dropped after ~25 s.
KEEPALIVE = {"tcp_keepalives_idle": "10", "tcp_keepalives_interval": "5", "tcp_keepalives_count": "3"}


class _PostgresLock:
    def __init__(self, url: URL, key: int, timeout: float) -> None:
        self.url, self.key, self.timeout = url, key, timeout
        self.engine: AsyncEngine | None = None
        self.conn: AsyncConnection | None = None
        self.hi, self.lo = (key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF  # as pg_locks shows a bigint key

    async def try_lock(self) -> bool:
        if self.engine is None:
            self.engine = create_async_engine(self.url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
        conn = await asyncio.wait_for(self.engine.connect(), self.timeout)
        try:
            for name, value in KEEPALIVE.items():
                with contextlib.suppress(Exception):  # a server or proxy that refuses them: locking still works
                    await conn.execute(text("SELECT set_config(:name, :value, false)"), {"name": name, "value": value})
            got = await asyncio.wait_for(
                conn.scalar(text("SELECT pg_try_advisory_lock(:key)"), {"key": self.key}), self.timeout)
        except BaseException:
            await self._close(conn)
            raise
        if not got:
            await self._close(conn)
            return False
        self.conn = conn
        return True

    async def check(self) -> bool:
        if self.conn is None:
            return False
        count = await asyncio.wait_for(self.conn.scalar(text(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND granted"
            " AND classid::bigint = :hi AND objid::bigint = :lo AND objsubid = 1"), {"hi": self.hi, "lo": self.lo}),
            self.timeout)
        return count == 1

    async def unlock(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": self.key}),
                                       self.timeout)
            await self._close(conn)  # closing the session releases the lock in any case

    async def _close(self, conn: AsyncConnection) -> None:
        try:
            await asyncio.wait_for(conn.close(), self.timeout)
        except Exception:
            with contextlib.suppress(Exception):
                await conn.invalidate()

    async def dispose(self) -> None:
        await self.unlock()
        if self.engine is not None:
            engine, self.engine = self.engine, None
            with contextlib.suppress(Exception):
                await engine.dispose()


class _FileLock:
    def __init__(self, path: Path) -> None:
        self.path, self.fd = path, None

    async def try_lock(self) -> bool:
        import fcntl

        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        if not self._same_file(fd):  # the file was replaced between open and lock: not the lock others see
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())  # for a person looking: who leads
        self.fd = fd
        return True

    def _same_file(self, fd: int) -> bool:
        try:
            mine, named = os.fstat(fd), os.stat(self.path)
        except OSError:
            return False
        return (mine.st_dev, mine.st_ino) == (named.st_dev, named.st_ino)

    async def check(self) -> bool:
        return self.fd is not None and self._same_file(self.fd)

    async def unlock(self) -> None:
        fd, self.fd = self.fd, None
        if fd is not None:
            os.close(fd)  # closing the only descriptor releases the flock

    async def dispose(self) -> None:
        await self.unlock()


class _Alone:
    """Nobody else can run the scheduler against this database (in-memory SQLite; no fcntl)."""

    def __init__(self) -> None:
        self.locked = False

    async def try_lock(self) -> bool:
        self.locked = True
        return True

    async def check(self) -> bool:
        return self.locked

    async def unlock(self) -> None:
        self.locked = False

    async def dispose(self) -> None:
        self.locked = False


def _lock_for(url: URL, name: str, key: int, timeout: float):
    if url.get_backend_name() == "postgresql":
        return _PostgresLock(url, key, timeout)
    if url.get_backend_name() == "sqlite":
        database = url.database
        if not database or database == ":memory:" or database.startswith("file::memory:"):
            return _Alone()
        try:
            import fcntl  # noqa: F401  (Unix only)
        except ImportError:
            log.warning("no file locks on this system: this process runs the %s without checking for others", name)
            return _Alone()
        return _FileLock(Path(database).with_name(f"{Path(database).name}.{name}.lock"))
    raise ValueError(f"no leader election for {url.get_backend_name()} databases")


def _reason(exc: BaseException) -> str:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


class Leadership:
    """This process's claim to run `name` (the scheduler) alone, on the database of `engine` (an AsyncEngine,
    or its URL). Tries every `retry_every` seconds while another process leads; `held` checks the lock."""

    def __init__(self, engine: AsyncEngine | URL | str, *, name: str = "scheduler", key: int = SCHEDULER_KEY,
                 retry_every: float = RETRY_EVERY, check_every: float = CHECK_EVERY, timeout: float = TIMEOUT) -> None:
        url = engine.url if isinstance(engine, AsyncEngine) else make_url(engine)
        self.name, self.retry_every, self.check_every, self.timeout = name, retry_every, check_every, timeout
        self.lock = _lock_for(url, name, key, timeout)
        self.leading = False

    async def try_acquire(self) -> bool:
        """One try: True when this process leads now (also when it already did)."""
        if self.leading:
            return True
        self.leading = await self.lock.try_lock()
        return self.leading

    async def acquire(self, *, timeout: float | None = None, stop: asyncio.Event | None = None) -> bool:
        """Wait until this process leads (True), `timeout` seconds pass or `stop` is set (False). A database that
        cannot be reached is tried again like a held lock."""
        deadline = time.monotonic() + timeout if timeout is not None else None
        told = False
        while True:
            try:
                if await self.try_acquire():
                    log.info("took over the %s: this worker runs it now (pid %s)", self.name, os.getpid())
                    return True
                if not told:
                    log.info("this worker is waiting: another one runs the %s (trying again every %g s)",
                             self.name, self.retry_every)
                    told = True
            except Exception as exc:
                log.warning("cannot take the %s lock (%s); trying again in %g s", self.name, _reason(exc),
                            self.retry_every)
            wait = self.retry_every
            if deadline is not None:
                wait = min(wait, deadline - time.monotonic())
                if wait <= 0:
                    return False
            if stop is None:
                await asyncio.sleep(wait)
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), wait)
                if stop.is_set():
                    return False

    async def held(self) -> bool:
        """Whether this process still leads: asks the lock (PostgreSQL: its own connection). A failed check
        ends the leadership — the lock may be someone else's by now."""
        if not self.leading:
            return False
        try:
            if await self.lock.check():
                return True
            reason = "the lock is gone"
        except Exception as exc:
            reason = _reason(exc)
        log.error("lost the %s lock (%s): this worker stops running it", self.name, reason)
        self.leading = False
        with contextlib.suppress(Exception):
            await self.lock.unlock()
        return False

    async def release(self) -> None:
        """Stop leading (another process may take over at its next try) and close the lock's connection."""
        was, self.leading = self.leading, False
        await self.lock.dispose()
        if was:
            log.info("released the %s lock", self.name)

    async def __aenter__(self) -> Leadership:
        await self.acquire()
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self.release()
