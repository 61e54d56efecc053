"""SQLite's log is copied back into the database beside the writers, never inside a commit (issue 18:
at 1M customers a scan batch of 40 ms sometimes took 0.7-0.9 s because its commit ran the checkpoint and
waited for the disk; a rep's reply commits the same way)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from sqlalchemy import text

from bot import db
from bot.db import CHECKPOINTS, _frames_not_checkpointed, make_engine

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
    monkeypatch.setattr(CHECKPOINTS, "check", lambda: None)  # the thread's rounds do nothing for now
    try:
        await _write(engine, 2500)  # past SQLite's own limit of 1,000 pages, where its commit would checkpoint
        assert _frames_not_checkpointed(path) >= 2500  # the commit copied nothing back
        small = path.stat().st_size
        monkeypatch.undo()
        CHECKPOINTS.check()  # what the thread does every quarter second
        assert _frames_not_checkpointed(path) == 0
        assert path.stat().st_size > small + 2500 * 3000  # the rows are in the database file now
        async with engine.connect() as connection:  # and the app goes on reading and writing as before
            assert await connection.scalar(text("SELECT count(*) FROM filler")) == 2500
        await _write(engine, 10, start=10_000)
    finally:
        await engine.dispose()
    assert not (tmp_path / "big.sqlite3-wal").exists()  # all engines gone: no log left behind, as SQLite does


async def test_the_checkpointer_thread_keeps_the_log_short_while_a_writer_goes_on(tmp_path: Path):
    path = tmp_path / "steady.sqlite3"
    engine = make_engine(f"sqlite+aiosqlite:///{path}")
    try:
        for batch in range(12):  # 12 commits of ~300 pages: 3,600 pages in all
            await _write(engine, 300, start=batch * 300)
            await asyncio.sleep(0.05)
        deadline = time.monotonic() + 5
        while _frames_not_checkpointed(path) >= CHECKPOINTS.pages and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert _frames_not_checkpointed(path) < CHECKPOINTS.pages
        assert path.stat().st_size > 3000 * 3000  # most rows were copied into the database file while it ran
        async with engine.connect() as connection:
            assert await connection.scalar(text("PRAGMA wal_autocheckpoint")) == 0  # no commit checkpoints
    finally:
        await engine.dispose()


def test_a_database_that_is_gone_or_has_no_engine_left_is_no_longer_watched(tmp_path: Path):
    import gc

    checkpointer = db.Checkpointer(interval=3600)  # rounds run by hand here, no thread

    class Engine:  # stands for an engine that is still in use
        pass

    kept, dropped = Engine(), Engine()
    checkpointer.watch(tmp_path / "gone.sqlite3", kept)  # never made: as if its directory was removed
    (tmp_path / "idle.sqlite3").touch()
    checkpointer.watch(tmp_path / "idle.sqlite3", dropped)
    (tmp_path / "used.sqlite3").touch()
    checkpointer.watch(tmp_path / "used.sqlite3", kept)
    del dropped
    gc.collect()
    checkpointer.check()
    assert set(checkpointer._paths) == {(tmp_path / "used.sqlite3").resolve()}
