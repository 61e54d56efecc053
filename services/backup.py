"""Backup and restore of the whole database (`python main.py backup`, `python main.py restore FILE`).

Rules:
- A backup is a consistent snapshot taken while the bot runs: SQLite's online backup API (a copy of one
  moment, WAL included), or `pg_dump --format=custom` for PostgreSQL (one transaction's view).
- A backup is checked after it is written (SQLite: integrity check; PostgreSQL: `pg_restore --list`).
- Restoring replaces everything in the database with the backup. The current data is first saved as a
  backup of its own ("before-restore-…"), so a restore can itself be undone; the schema is then
  upgraded to this version's migrations. Stop the bot while restoring.
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy.engine.url import make_url

from services.messages import N_, DomainError


@dataclass(frozen=True)
class BackupResult:
    path: Path
    size: int
    customers: int | None  # SQLite only: read from the snapshot itself


def default_path(folder: Path, url: str, prefix: str = "fieldcrm") -> Path:
    suffix = ".sqlite3" if make_url(url).get_backend_name() == "sqlite" else ".pgdump"
    return folder / f"{prefix}-{datetime.now():%Y%m%d-%H%M%S}{suffix}"


def _sqlite_file(url: str) -> Path:
    return Path(make_url(url).database or "").resolve()


def _libpq(url: str) -> tuple[str, dict[str, str]]:
    """The SQLAlchemy URL as pg_dump / pg_restore take it, without the password (other users of the machine
    can read a command line), and the environment that carries the password instead."""
    import os

    parsed = make_url(url).set(drivername="postgresql")
    env = dict(os.environ)
    if parsed.password:
        env["PGPASSWORD"] = str(parsed.password)
    return parsed.set(password=None).render_as_string(hide_password=False), env


def _tool(name: str) -> str:
    found = shutil.which(name)
    if not found:
        raise DomainError(N_("{tool} is needed for a PostgreSQL backup and is not installed (Debian/Ubuntu: "
                             "apt install postgresql-client)"), tool=name)
    return found


def _run(command: list[str], env: dict[str, str] | None = None) -> None:
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise DomainError(N_("{tool} failed: {reason}"), tool=Path(command[0]).name,
                          reason=(done.stderr or done.stdout).strip().splitlines()[-1][:300] if
                          (done.stderr or done.stdout).strip() else f"exit {done.returncode}")


def backup(url: str, path: Path) -> BackupResult:
    """Write a consistent snapshot of the database at `url` to `path` and check it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if make_url(url).get_backend_name() == "sqlite":
        source_file = _sqlite_file(url)
        if not source_file.is_file():
            raise DomainError(N_("there is no database at {path} yet"), path=str(source_file))
        source, target = sqlite3.connect(source_file), sqlite3.connect(path)
        try:
            source.backup(target)
        finally:
            source.close()
            target.close()
        customers = _check_sqlite(path)
        return BackupResult(path, path.stat().st_size, customers)
    address, env = _libpq(url)
    _run([_tool("pg_dump"), "--format=custom", "--no-owner", "--file", str(path), address], env)
    _run([_tool("pg_restore"), "--list", str(path)])
    return BackupResult(path, path.stat().st_size, None)


def _check_sqlite(path: Path) -> int:
    """Integrity of a SQLite backup, and that it is FieldCRM's; returns its number of customers."""
    try:
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            if connection.execute("PRAGMA integrity_check").fetchone()[0] != "ok":
                raise DomainError(N_("the backup {path} is damaged"), path=str(path))
            tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if not {"alembic_version", "customer"} <= tables:
                raise DomainError(N_("{path} is not a FieldCRM backup"), path=str(path))
            return connection.execute("SELECT count(*) FROM customer").fetchone()[0]
        finally:
            connection.close()
    except sqlite3.DatabaseError:
        raise DomainError(N_("{path} is not a FieldCRM backup"), path=str(path)) from None


def restore(url: str, path: Path, safety_folder: Path) -> BackupResult:
    """Replace the database at `url` with the backup at `path`; returns the safety backup taken first."""
    if not path.is_file():
        raise DomainError(N_("there is no backup at {path}"), path=str(path))
    sqlite = make_url(url).get_backend_name() == "sqlite"
    if sqlite:
        _check_sqlite(path)
    else:
        _run([_tool("pg_restore"), "--list", str(path)])
    target_exists = not sqlite or _sqlite_file(url).is_file()
    safety = backup(url, default_path(safety_folder, url, "before-restore")) if target_exists else None
    if sqlite:
        _sqlite_file(url).parent.mkdir(parents=True, exist_ok=True)
        source, target = sqlite3.connect(f"file:{path}?mode=ro", uri=True), sqlite3.connect(_sqlite_file(url))
        try:
            source.backup(target)  # page by page into the live file, WAL and all
        finally:
            source.close()
            target.close()
    else:
        address, env = _libpq(url)
        _run([_tool("pg_restore"), "--clean", "--if-exists", "--no-owner", "--single-transaction",
              "--dbname", address, str(path)], env)
    return safety
