"""Database engine, sessions and schema upgrades (SQLite by default, PostgreSQL via DATABASE_URL)."""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
import weakref
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.engine.url import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

ROOT = Path(__file__).resolve().parent.parent


def make_engine(url: str, *, echo: bool = False) -> AsyncEngine:
    """An async engine; SQLite gets WAL, foreign keys and a busy timeout on every connection."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        # A database file at a plain path (not in memory, not a file: URI): its folder is made, and the
        # checkpointer looks after it.
        watched = bool(parsed.database) and parsed.database != ":memory:" and not parsed.database.startswith("file:")
        if watched:
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, echo=echo, connect_args={"timeout": 30})

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            # 64 MiB page cache (the default is 2 MiB): index upkeep on big imports and reports stays in RAM.
            cursor.execute("PRAGMA cache_size=-65536")
            if watched:  # no checkpoint inside a commit: bot.db.Checkpointer does them beside the writers
                cursor.execute("PRAGMA wal_autocheckpoint=0")
            # After a checkpoint the log is cut back to 64 MiB (a big import would leave it at gigabytes).
            cursor.execute("PRAGMA journal_size_limit=67108864")
            cursor.close()

        if watched:
            CHECKPOINTS.watch(Path(parsed.database), engine.sync_engine)
        _note_writes(engine)
        hold = float(os.environ.get("SQLITE_LOCK_LOG_MS", "0") or 0)
        if hold > 0:
            _log_write_holds(engine, hold / 1000)
        return engine
    return create_async_engine(url, echo=echo, pool_pre_ping=True)


class Checkpointer:
    """Rule "a commit never waits for the disk": SQLite's WAL is copied back into the database file (a
    checkpoint) by this thread, never inside a commit. By default SQLite runs that checkpoint in the
    connection whose commit passed 1,000 pages of log, with two fsyncs; the write lock is already released
    then, but the commit returns only after it — at 1M customers 0.7-0.9 s of a 40 ms transaction, so a
    rep's reply or a scan batch waited for the disk. Here every SQLite connection of the app has
    `wal_autocheckpoint=0`, and one thread per process looks at the log of each database the process has
    an engine on, `interval` s apart: when the log changed since its last checkpoint and `spacing` s have
    passed, it checkpoints (PASSIVE: it never blocks a reader or a writer; the sqlite3 module lets other
    threads run meanwhile) — at most one checkpoint a second, whatever the rate of commits, and the log
    holds at most about a second of writes. It only stats the log file: opening and closing SQLite's own
    files outside SQLite would drop the process's POSIX locks on them (sqlite.org/howtocorrupt.html 2.2).
    The connection is opened for the checkpoint and closed after it. Several processes on one database
    each run one; SQLite lets one checkpoint at a time."""

    def __init__(self, *, interval: float = 0.25, spacing: float = 1.0) -> None:
        self.interval, self.spacing = interval, spacing
        self._paths: dict[Path, weakref.WeakSet] = {}  # database → the engines open on it
        self._seen: dict[Path, tuple[int, int]] = {}  # database → its log's (size, mtime) at the last checkpoint
        self._last: dict[Path, float] = {}  # database → when it was last checkpointed (monotonic)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.runs = 0  # checkpoints done (diagnostics and tests)

    def watch(self, path: Path, engine: object) -> None:
        """Look after `path` while `engine` (or another engine on it) exists."""
        with self._lock:
            self._paths.setdefault(path.resolve(), weakref.WeakSet()).add(engine)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="sqlite-checkpointer", daemon=True)
                self._thread.start()

    def _loop(self) -> None:
        while True:
            time.sleep(self.interval)
            try:
                self.check()
            except Exception:  # never let the thread die: the log would grow without end
                logging.getLogger("fieldcrm.db").exception("checkpoint round failed")

    def check(self, *, now: float | None = None) -> None:
        """One round over the watched databases (the thread's loop; tests call it directly)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            for gone in [path for path, engines in self._paths.items() if not engines]:
                del self._paths[gone]  # no engine on it is left in this process
                self._seen.pop(gone, None)
                self._last.pop(gone, None)
            paths = list(self._paths)
        for path in paths:
            try:
                log = os.stat(path.parent / (path.name + "-wal"))
            except OSError:  # no log (yet, or not any more): nothing to copy
                continue
            state = (log.st_size, log.st_mtime_ns)
            if state == self._seen.get(path) or now - self._last.get(path, -1e9) < self.spacing:
                continue
            try:
                complete = self._checkpoint(path)
            except sqlite3.Error as error:  # busy or gone: the next round tries again
                logging.getLogger("fieldcrm.db").debug("checkpoint of %s skipped: %s", path, error)
                continue
            self._last[path] = now
            if complete:  # else (readers held part of the log back) tried again after `spacing`
                self._seen[path] = state

    def _checkpoint(self, path: Path) -> bool:
        """One PASSIVE checkpoint; True when the whole log was copied back."""
        # mode=rw: a database removed meanwhile is not made again, empty, by this connection.
        connection = sqlite3.connect(path.as_uri() + "?mode=rw", uri=True, timeout=0.5, isolation_level=None)
        try:
            connection.execute("PRAGMA wal_autocheckpoint=0")
            connection.execute("PRAGMA journal_size_limit=67108864")
            _busy, pages, copied = connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            self.runs += 1
            return copied == pages
        finally:
            connection.close()


CHECKPOINTS = Checkpointer()


_WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE")


def _note_writes(engine: AsyncEngine) -> None:
    """Mark each connection's transaction that wrote something (`wrote`)."""

    @event.listens_for(engine.sync_engine, "begin")
    def _began(conn) -> None:
        conn.info["wrote"] = False

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def _statement(conn, _cursor, statement, _params, _context, _many) -> None:
        if not conn.info.get("wrote") and statement.lstrip()[:7].upper().startswith(_WRITES):
            conn.info["wrote"] = True


async def wrote(session: AsyncSession) -> bool:
    """True when the session's transaction wrote (or will write: pending changes are flushed first)."""
    await session.flush()
    connection = await session.connection()
    return connection.sync_connection.info.get("wrote", True)


def _log_write_holds(engine: AsyncEngine, longer_than: float) -> None:
    """Diagnostics (SQLITE_LOCK_LOG_MS=N): log each transaction that held SQLite's write lock over N ms.

    The lock is taken by a transaction's first write and kept to its commit or rollback; the line names
    the process and that first statement, so the writes that make others wait can be found."""
    @event.listens_for(engine.sync_engine, "after_cursor_execute")  # after: the lock is held from here
    def _first_write(conn, _cursor, statement, _params, _context, _many) -> None:
        if "write_since" not in conn.info and statement.lstrip()[:7].upper().startswith(_WRITES):
            conn.info["write_since"] = (time.perf_counter(), " ".join(statement.split())[:120])

    def _ended(conn) -> None:
        started = conn.info.pop("write_since", None)
        if started is not None and time.perf_counter() - started[0] > longer_than:
            logging.getLogger("fieldcrm.db").warning("pid %s held the write lock %.0f ms from: %s", os.getpid(),
                                                     (time.perf_counter() - started[0]) * 1000, started[1])

    event.listen(engine.sync_engine, "commit", _ended)
    event.listen(engine.sync_engine, "rollback", _ended)


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def alembic_config() -> Config:
    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(ROOT / "migrations"))
    return cfg


def _upgrade(connection: Connection, revision: str) -> None:
    cfg = alembic_config()
    cfg.attributes["connection"] = connection
    command.upgrade(cfg, revision)


def _current_and_head(connection: Connection) -> tuple[str | None, str | None]:
    current = MigrationContext.configure(connection).get_current_revision()
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    return current, head


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    """Apply the Alembic migrations up to `revision` (the app calls this on start)."""
    async with engine.begin() as conn:
        await conn.run_sync(_upgrade, revision)


async def schema_status(engine: AsyncEngine) -> tuple[str | None, str | None]:
    """(revision the database is at, newest revision the code knows)."""
    async with engine.connect() as conn:
        return await conn.run_sync(_current_and_head)


SEEDED = {"alembic_version", "dictionary_entry", "contact_strategy", "purchase_strategy"}  # made by migrations


def data_a_downgrade_would_lose(connection: Connection) -> str | None:
    """Rule "a downgrade never silently destroys data": None when the database holds nothing beyond what the
    migrations seed; otherwise one line, in the settings' language, naming the tables and rows a downgrade
    would delete and what to do (back up, then -x force=yes)."""
    from sqlalchemy import inspect, text

    from bot.i18n import gettext_for
    from bot.settings import get_settings
    from models.common import metadata

    present = set(inspect(connection).get_table_names())
    counts = {}
    for table in metadata.sorted_tables:
        if table.name in present and table.name not in SEEDED:
            rows = connection.execute(text(f'SELECT COUNT(*) FROM "{table.name}"')).scalar() or 0
            if rows:
                counts[table.name] = rows
    if not counts:
        return None
    _ = gettext_for(get_settings().default_language)
    what = ", ".join(f"{name} {rows:,}" for name, rows in sorted(counts.items(), key=lambda x: (-x[1], x[0])))
    return _("Refusing to downgrade: it would delete data ({tables} rows). Take a backup first "
             "(python3 main.py backup), then run again with -x force=yes.").format(tables=what)
