"""Database engine, sessions and schema upgrades (SQLite by default, PostgreSQL via DATABASE_URL)."""

from __future__ import annotations

import logging
import os
import time
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
        if parsed.database and parsed.database != ":memory:":
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
            cursor.close()

        _note_writes(engine)
        hold = float(os.environ.get("SQLITE_LOCK_LOG_MS", "0") or 0)
        if hold > 0:
            _log_write_holds(engine, hold / 1000)
        return engine
    return create_async_engine(url, echo=echo, pool_pre_ping=True)


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
