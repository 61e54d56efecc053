"""Test fixtures: a fresh, migrated database per test, on SQLite and on the PostgreSQL server.

Storage tests take the `engine` / `session` fixtures and run once per backend. PostgreSQL is
127.0.0.1:5432 (override with TEST_POSTGRES_URL); when it is unreachable the postgres variants are
skipped — except under CI=true, where they fail, because CI must prove the PostgreSQL path.
Each test gets its own database in the state of a template migrated once per run, so tests are isolated
and fast: a SQLite file copied from it; on PostgreSQL a database a test before put back in that state and
renamed (`_fresh_pg`), else a copy. Checked once against a copy with pg_dump, schema and data, after each of
502 tests that put their database back (2026-12-08): all the same.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import os
import shutil
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.engine.url import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

import bootstrap
from bot.db import make_engine, make_sessionmaker, upgrade

# Tests read the compiled catalogues: compile any .po newer than its .mo, even when pytest is run directly.
bootstrap.compile_catalogues(sys.executable)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Once every test module is imported, keep the cycle collector off those objects, as the product does
    once it has started (bot.memory.settle): otherwise each of its full passes walks the whole of the test
    process — aiogram, SQLAlchemy, every test module, 0.3-0.5 s a pass — at whatever moment one falls due,
    inside a test that times how long the bot kept a rep waiting, too."""
    gc.collect()
    gc.freeze()


PG_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
_counter = itertools.count()


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def _pg_reachable() -> bool:
    url = make_url(PG_URL)
    return _port_open(url.host or "127.0.0.1", url.port or 5432)


async def _pg_admin(sql: str) -> None:
    import asyncpg

    url = make_url(PG_URL)
    conn = await asyncpg.connect(host=url.host, port=url.port or 5432, user=url.username or "postgres",
                                 password=url.password, database=url.database or "postgres")
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def _pg_url(database: str) -> str:
    return make_url(PG_URL).set(database=database).render_as_string(hide_password=False)


async def _migrate(url: str) -> None:
    engine = make_engine(url)
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.sqlite3"
    asyncio.run(_migrate(f"sqlite+aiosqlite:///{path}"))
    # Each test copies this one file: everything must be in it, not in its write-ahead log. The engine's last
    # connection may still be closing in its thread when dispose returns, so its checkpoint at close cannot
    # be counted on (a copy then lacked the last migrations' columns: "no column named navigator", twice at
    # the start of a run). Wait for it, fold the log in, and leave WAL mode.
    # Leaving WAL mode needs the only connection: while the engine's last one is still open, SQLite says
    # "database is locked" at once, without waiting (2 runs in 6, all of one worker's SQLite tests then
    # failed). So try again for a while, collecting what may still hold one.
    import sqlite3
    import time

    deadline = time.monotonic() + 30
    while True:
        con = sqlite3.connect(path, timeout=30)
        try:
            con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            if con.execute("PRAGMA journal_mode=DELETE").fetchone()[0] == "delete":
                break
        except sqlite3.OperationalError:
            if time.monotonic() > deadline:
                raise
        finally:
            con.close()
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} stayed in WAL mode for 30 s")
        gc.collect()
        time.sleep(0.05)
    assert not path.with_name(path.name + "-wal").exists() or path.with_name(path.name + "-wal").stat().st_size == 0
    return path


def require_postgres() -> None:
    """PostgreSQL tests run against the real server; under CI=true an unreachable one fails, never skips."""
    if not _pg_reachable():
        message = f"PostgreSQL is not reachable at {PG_URL}"
        if IN_CI:
            pytest.fail(message + " (required under CI=true)")
        pytest.skip(message)


@pytest.fixture(scope="session")
def postgres_template() -> str:
    require_postgres()
    name = f"fieldcrm_tmpl_{os.getpid()}"
    asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}"'))
    asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
    asyncio.run(_migrate(_pg_url(name)))
    _TEMPLATE_STATE.update(asyncio.run(_pg_state(name)))
    yield name
    for spare in [name, *_PG_SPARE]:
        asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{spare}" WITH (FORCE)'))
    _PG_SPARE.clear()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of a fresh, migrated database (one per test) on each backend."""
    if request.param == "sqlite":
        path = tmp_path / "fieldcrm.sqlite3"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite+aiosqlite:///{path}"
        return
    yield from _fresh_pg(request.getfixturevalue("postgres_template"))


def _fresh_pg(template: str):
    """A database in the template's state under a name of its own: a spare one put back in that state by the
    test before (`_put_back`), renamed, else a copy of the template. A copy and its drop cost PostgreSQL
    0.2-0.5 s a test (the copy writes the whole database, its catalogues too, through the write-ahead log);
    putting back what a test wrote costs 0.05-0.1 s. The new name keeps whatever the worker process or the
    test process holds per database URL (its engines, the reports it holds) from ever meeting this one."""
    name = f"fieldcrm_t{os.getpid()}_{next(_counter)}"
    asyncio.run(_take(name, template))
    yield _pg_url(name)
    if asyncio.run(_put_back(name)):
        _PG_SPARE.append(name)
    else:
        asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


_PG_SPARE: list[str] = []  # this process's databases put back in the template's state, to be renamed and used
_TEMPLATE_STATE: dict = {}  # the template's schema fingerprint, sequences and seeded rows (`_pg_state`)
# Everything a test could change in a database's shape: relations, columns, constraints, indexes, triggers
# (and whether each fires), functions, schemas, extensions and the database's own settings.
_SHAPE = """SELECT md5(string_agg(x, ',' ORDER BY x)) FROM (
  SELECT concat('c', n.nspname, '.', c.relname, c.relkind::text) FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
  UNION ALL SELECT concat('a', c.relname, a.attname, a.atttypid, a.attnotnull, a.atthasdef, a.attnum)
    FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = 'public' AND a.attnum > 0 AND NOT a.attisdropped
  UNION ALL SELECT concat('d', c.relname, d.adnum, pg_get_expr(d.adbin, d.adrelid)) FROM pg_attrdef d
    JOIN pg_class c ON c.oid = d.adrelid
  UNION ALL SELECT concat('t', tgname, tgenabled::text, tgrelid::regclass::text, pg_get_triggerdef(oid))
    FROM pg_trigger WHERE NOT tgisinternal
  UNION ALL SELECT concat('p', proname, md5(prosrc)) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
    WHERE n.nspname = 'public'
  UNION ALL SELECT concat('k', conname, contype::text, pg_get_constraintdef(oid)) FROM pg_constraint
    WHERE connamespace = 'public'::regnamespace
  UNION ALL SELECT concat('i', pg_get_indexdef(indexrelid)) FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public'
  UNION ALL SELECT concat('n', nspname) FROM pg_namespace
  UNION ALL SELECT concat('e', extname, extversion) FROM pg_extension
  UNION ALL SELECT concat('s', array_to_string(setconfig, ';')) FROM pg_db_role_setting
    WHERE setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database())
) shape(x)"""


# The tables ever written to, emptied since or not: a table of the template has no pages of its own (rows
# written after a DELETE could land where the deleted ones were, out of the order they are written in).
_WRITTEN = "SELECT t FROM unnest($1::text[]) t WHERE pg_relation_size(format('%I', t)) > 0"


def _rows(table: str) -> str:
    return f'SELECT md5(coalesce(string_agg(r::text, \'|\' ORDER BY r::text), \'\')) FROM "{table}" r'


async def _pg_connect(database: str):
    import asyncpg

    url = make_url(PG_URL)
    return await asyncpg.connect(host=url.host, port=url.port or 5432, user=url.username or "postgres",
                                 password=url.password, database=database)


async def _pg_state(database: str) -> dict:
    """What `_put_back` compares with and restores: the shape, every sequence, and the rows the migrations
    seed (bot.db.SEEDED), as JSON and as a digest."""
    from bot.db import SEEDED

    conn = await _pg_connect(database)
    try:
        tables = [r[0] for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
        seeded = {}
        for table in sorted(SEEDED & set(tables)):
            seeded[table] = (await conn.fetchval(_rows(table)),
                             await conn.fetchval(f'SELECT coalesce(json_agg(r), \'[]\') FROM "{table}" r'))
        sequences = [tuple(r) for r in await conn.fetch(
            "SELECT format('%I.%I', schemaname, sequencename), coalesce(last_value, start_value), last_value IS NOT NULL"
            " FROM pg_sequences")]
        return {"shape": await conn.fetchval(_SHAPE), "tables": [t for t in tables if t not in seeded],
                "seeded": seeded, "sequences": sequences}
    finally:
        await conn.close()


async def _take(name: str, template: str) -> None:
    while _PG_SPARE:
        spare = _PG_SPARE.pop()
        try:
            await _pg_admin(f'ALTER DATABASE "{spare}" RENAME TO "{name}"')
            return
        except Exception:  # someone connected meanwhile: not this one
            await _pg_admin(f'DROP DATABASE IF EXISTS "{spare}" WITH (FORCE)')
    await _pg_admin(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')


async def _put_back(name: str) -> bool:
    """Put a used database back in the template's state: its sessions ended, the tables a test wrote
    emptied (TRUNCATE: new files, as in a copy of the template), the seeded rows and
    every sequence as they were. False — drop it — when its shape changed (a test altered the schema or a
    trigger) or anything is not as it was after all."""
    state = _TEMPLATE_STATE
    try:
        conn = await _pg_connect(name)
    except Exception:
        return False
    try:
        await conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                           " WHERE datname = current_database() AND pid <> pg_backend_pid()")
        if await conn.fetchval(_SHAPE) != state["shape"]:
            return False
        written = [r[0] for r in await conn.fetch(_WRITTEN, state["tables"])]
        changed = [t for t, (digest, _) in state["seeded"].items() if await conn.fetchval(_rows(t)) != digest]
        async with conn.transaction():
            # Restored as they were, not as a change: no trigger logs the seeded rows for the reports.
            await conn.execute("SET LOCAL session_replication_role = replica")
            if written or changed:
                await conn.execute(f"TRUNCATE {', '.join(f'{chr(34)}{t}{chr(34)}' for t in written + changed)}"
                                   " RESTART IDENTITY CASCADE")
            for table, (digest, rows) in state["seeded"].items():
                if await conn.fetchval(_rows(table)) != digest:
                    await conn.execute(f'DELETE FROM "{table}"')
                    await conn.execute(f'INSERT INTO "{table}" SELECT * FROM json_populate_recordset(null::"{table}", $1)',
                                       rows)
            for sequence, value, called in state["sequences"]:
                await conn.execute("SELECT setval($1::regclass, $2, $3)", sequence, value, called)
        left = await conn.fetch(_WRITTEN, state["tables"])
        return not left and [await conn.fetchval(_rows(t)) for t in state["seeded"]] == [
            digest for digest, _ in state["seeded"].values()]
    except Exception:
        return False
    finally:
        await conn.close()


@pytest.fixture
def pg_url(postgres_template: str) -> str:
    """A fresh, migrated PostgreSQL database only (scale-out tests: several processes share one database)."""
    yield from _fresh_pg(postgres_template)


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    from bot.background import close_all

    engine = make_engine(db_url)
    yield engine
    await close_all()  # the worker process's connections to this database (bot.background)
    await engine.dispose()


@pytest.fixture
async def session(engine: AsyncEngine) -> AsyncIterator[AsyncSession]:
    async with make_sessionmaker(engine)() as session:
        yield session


@pytest.fixture
def cli_env(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point the CLI (bot.cli.main, run in-process) at this test's database."""
    from bot.settings import get_settings

    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("BOT_TOKEN", raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env
    get_settings.cache_clear()
    yield db_url
    get_settings.cache_clear()


# One Redis database per pytest-xdist worker (gw0 → 15, gw1 → 14, …): tests empty theirs before and after.
# TEST_REDIS_DB_BASE moves the range down, so that two test runs on one machine do not share a database.
_WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
_REDIS_BASE = int(os.environ.get("TEST_REDIS_DB_BASE", "15"))
REDIS_URL = os.environ.get("TEST_REDIS_URL", f"redis://127.0.0.1:6379/{_REDIS_BASE - _WORKER}")


def redis_reachable() -> bool:
    from urllib.parse import urlsplit

    url = urlsplit(REDIS_URL)
    return _port_open(url.hostname or "127.0.0.1", url.port or 6379)


def require_redis() -> None:
    """Redis tests run against the real server; under CI=true an unreachable one fails instead of skipping."""
    if not redis_reachable():
        if IN_CI:
            pytest.fail(f"Redis is not reachable at {REDIS_URL} (required under CI=true)")
        pytest.skip(f"Redis is not reachable at {REDIS_URL}")


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def state_settings(request: pytest.FixtureRequest) -> AsyncIterator[dict]:
    """Conversation state in memory, and in the real Redis (emptied before and after)."""
    if request.param == "memory":
        yield {}
        return
    require_redis()
    import redis.asyncio as aioredis

    client = aioredis.from_url(REDIS_URL)
    await client.flushdb()
    try:
        yield {"redis_url": REDIS_URL}
    finally:
        await client.flushdb()
        await client.aclose()
