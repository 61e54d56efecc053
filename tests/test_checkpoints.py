"""SQLite's log is copied back into the database beside the writers, never inside a commit (issue 18:
at 1M customers a scan batch of 40 ms sometimes took 0.7-0.9 s because its commit ran the checkpoint and
waited for the disk; a rep's reply commits the same way). These tests only stat SQLite's files: opening
them outside SQLite would drop the process's locks on them."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from sqlalchemy import text

from bot import db
from bot.db import CHECKPOINTS, make_engine

ROW = "x" * 3000  # about one 4 KiB page per row


async def _write(engine, rows: int, start: int = 0) -> None:
    async with engine.begin() as connection:
        await connection.execute(text("CREATE TABLE IF NOT EXISTS filler (id INTEGER PRIMARY KEY, body TEXT)"))
        await connection.execute(text("INSERT INTO filler (id, body) VALUES (:id, :body)"),
                                 [{"id": start + n, "body": ROW} for n in range(rows)])


async def test_a_big_commit_returns_without_copying_the_log_and_the_checkpointer_copies_it_after(tmp_path: Path,
                                                                                                monkeypatch):
    path = tmp_path / "big.sqlite3"
    engine = make_engine(f"sqlite+aiosqlite:///{path}")
    monkeypatch.setattr(CHECKPOINTS, "check", lambda **_: None)  # the thread's rounds do nothing for now
    try:
        await _write(engine, 2500)  # past SQLite's own limit of 1,000 pages, where its commit would checkpoint
        assert path.stat().st_size < 1_000_000  # the commit copied nothing back: the rows are in the log only
        assert Path(f"{path}-wal").stat().st_size > 2500 * 3000
        monkeypatch.undo()
        CHECKPOINTS.check(now=time.monotonic() + 3600)  # what the thread does, its second since the last one gone
        assert path.stat().st_size > 2500 * 3000  # the rows are in the database file now
        async with engine.connect() as connection:  # and the app goes on reading and writing as before
            assert await connection.scalar(text("SELECT count(*) FROM filler")) == 2500
            assert await connection.scalar(text("PRAGMA wal_autocheckpoint")) == 0  # no commit checkpoints
        await _write(engine, 10, start=10_000)
    finally:
        await engine.dispose()
    assert not (tmp_path / "big.sqlite3-wal").exists()  # all engines gone: no log left behind, as SQLite does


async def test_the_checkpointer_thread_copies_the_log_back_while_a_writer_goes_on(tmp_path: Path):
    path = tmp_path / "steady.sqlite3"
    engine = make_engine(f"sqlite+aiosqlite:///{path}")
    try:
        for batch in range(12):  # 12 commits of ~300 pages: 3,600 pages in all
            await _write(engine, 300, start=batch * 300)
            await asyncio.sleep(0.05)
        deadline = time.monotonic() + 5
        while path.stat().st_size < 3600 * 3000 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert path.stat().st_size > 3600 * 3000  # copied back while the engine is still open
    finally:
        await engine.dispose()


async def test_a_file_uri_database_keeps_sqlites_own_checkpoints(tmp_path: Path):
    """The checkpointer looks only after plain paths; a `file:` URI keeps SQLite's checkpoints in commits,
    so its log cannot grow without end."""
    engine = make_engine(f"sqlite+aiosqlite:///file:{tmp_path / 'uri.sqlite3'}?uri=true")
    try:
        async with engine.connect() as connection:
            assert await connection.scalar(text("PRAGMA wal_autocheckpoint")) == 1000
    finally:
        await engine.dispose()


def test_a_database_with_no_engine_left_is_no_longer_watched(tmp_path: Path):
    import gc

    checkpointer = db.Checkpointer(interval=3600)  # rounds run by hand here

    class Engine:  # stands for an engine that is still in use
        pass

    kept, dropped = Engine(), Engine()
    checkpointer.watch(tmp_path / "not-made-yet.sqlite3", kept)  # an engine that has not connected yet
    checkpointer.watch(tmp_path / "idle.sqlite3", dropped)
    del dropped
    gc.collect()
    checkpointer.check()
    assert set(checkpointer._paths) == {(tmp_path / "not-made-yet.sqlite3").resolve()}
    assert not (tmp_path / "not-made-yet.sqlite3").exists()  # and nothing was made


async def test_a_checkpoint_a_reader_held_back_is_finished_once_the_reader_is_done(tmp_path: Path, monkeypatch):
    """A PASSIVE checkpoint stops at the oldest reader's snapshot: the rest of the log is copied back at a
    later round even when nothing is written meanwhile (before, the round was counted as done and the rest
    waited for the next write)."""
    import sqlite3

    path = tmp_path / "held.sqlite3"
    engine = make_engine(f"sqlite+aiosqlite:///{path}")
    checkpointer = db.Checkpointer(interval=3600)  # rounds run by hand here
    monkeypatch.setattr(CHECKPOINTS, "check", lambda **_: None)
    try:
        await _write(engine, 100)
        checkpointer.watch(path, engine.sync_engine)
        checkpointer.check(now=1000.0)  # the first 100 rows copied back
        reader = sqlite3.connect(path, isolation_level=None)
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM filler").fetchone()  # a snapshot without the next rows
        await _write(engine, 500, start=1000)
        checkpointer.check(now=1002.0)  # held back by the reader
        size = path.stat().st_size
        assert size < 500 * 3000
        reader.execute("COMMIT")
        reader.close()
        checkpointer.check(now=1004.0)  # nothing written since: the rest is copied back all the same
        assert path.stat().st_size > 600 * 3000
    finally:
        await engine.dispose()
