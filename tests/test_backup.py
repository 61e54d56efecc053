"""Backup and restore: a snapshot taken while the database is in use comes back table by table, row by row;
the data a restore replaces is kept; a file that is not a backup is refused and changes nothing."""

from __future__ import annotations

import asyncio

from sqlalchemy import select, text

from bot.cli import main
from bot.db import make_engine
from models import metadata


async def snapshot(url: str) -> dict[str, list[tuple]]:
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            tables = {}
            for table in metadata.sorted_tables:
                order = [c for c in table.primary_key.columns] or list(table.columns)
                rows = (await conn.execute(select(table).order_by(*order))).all()
                tables[table.name] = [tuple(r) for r in rows]
            tables["alembic_version"] = (await conn.execute(text("SELECT version_num FROM alembic_version"))).all()
            return tables
    finally:
        await engine.dispose()


def test_backup_then_restore_gives_back_every_table(cli_env, tmp_path, capsys):
    assert main(["--lang", "en", "demo-data", "--customers", "25"]) == 0
    before = asyncio.run(snapshot(cli_env))
    assert len(before["customer"]) == 25 and before["purchase"] and before["audit_log"]
    target = tmp_path / "crm.backup"
    assert main(["--lang", "en", "backup", "-o", str(target)]) == 0
    assert "Backup written to" in capsys.readouterr().out
    assert main(["--lang", "en", "user", "add", "Someone New", "--role", "rep"]) == 0
    assert asyncio.run(snapshot(cli_env)) != before
    assert main(["--lang", "en", "restore", str(target), "--yes"]) == 0
    out = capsys.readouterr().out
    assert "Restored" in out and "before-restore-" in out
    assert asyncio.run(snapshot(cli_env)) == before


def test_restore_asks_first_and_refuses_what_is_not_a_backup(cli_env, tmp_path, capsys):
    assert main(["--lang", "en", "demo-data", "--customers", "5"]) == 0
    before = asyncio.run(snapshot(cli_env))
    bogus = tmp_path / "notes.txt"
    bogus.write_text("not a database")
    assert main(["--lang", "en", "restore", str(bogus)]) == 2  # no --yes and no terminal to ask
    assert "--yes" in capsys.readouterr().err
    assert main(["--lang", "en", "restore", str(bogus), "--yes"]) == 2
    err = capsys.readouterr().err
    assert "Error:" in err and "Traceback" not in err
    assert asyncio.run(snapshot(cli_env)) == before
