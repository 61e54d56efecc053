"""Test fixtures: a fresh, migrated database per test, on SQLite and on the PostgreSQL server.

Storage tests take the `engine` / `session` fixtures and run once per backend. PostgreSQL is
127.0.0.1:5432 (override with TEST_POSTGRES_URL); when it is unreachable the postgres variants are
skipped — except under CI=true, where they fail, because CI must prove the PostgreSQL path.
Each test gets its own database copied from a template migrated once per run, so tests are isolated
and fast.
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
    yield name
    asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


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
    name = f"fieldcrm_t{os.getpid()}_{next(_counter)}"
    asyncio.run(_pg_admin(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
    yield _pg_url(name)
    asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


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
