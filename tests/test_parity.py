"""Same input, same answer: the same seeded scenario on SQLite and on PostgreSQL, and under two hash seeds,
gives identical reminders (as sets and in order), workbook cells, lookup lists, import ids and export
files (tests/parity_run.py makes them, each run in its own process)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import _pg_admin, _pg_url, require_postgres

RUN = Path(__file__).resolve().parent / "parity_run.py"


def _start(url: str, out: Path, hash_seed: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    return subprocess.Popen([sys.executable, str(RUN), url, str(out)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _finish(process: subprocess.Popen, out: Path) -> dict:
    output, _ = process.communicate(timeout=240)
    assert process.returncode == 0, output[-3000:]
    return json.loads(out.read_text(encoding="utf-8"))


def _differences(a: dict, b: dict) -> list[str]:
    found = []
    for key in sorted(a.keys() | b.keys()):
        if a.get(key) != b.get(key):
            if isinstance(a.get(key), dict) and isinstance(b.get(key), dict):
                found += [f"{key}.{inner}" for inner in _differences(a[key], b[key])]
            else:
                found.append(key)
    return found


@pytest.mark.postgres
def test_the_same_scenario_gives_the_same_answers_on_every_engine_and_hash_seed(tmp_path):
    require_postgres()
    database = f"fieldcrm_parity_{os.getpid()}"
    asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
    asyncio.run(_pg_admin(f'CREATE DATABASE "{database}"'))
    try:
        runs = {
            "sqlite, hash seed 1": (f"sqlite+aiosqlite:///{tmp_path / 'one.sqlite3'}", "1"),
            "sqlite, hash seed 2": (f"sqlite+aiosqlite:///{tmp_path / 'two.sqlite3'}", "2"),
            "postgresql, hash seed 3": (_pg_url(database), "3"),
        }
        started = {label: (_start(url, tmp_path / f"{n}.json", seed), tmp_path / f"{n}.json")
                   for n, (label, (url, seed)) in enumerate(runs.items())}
        results = {label: _finish(process, out) for label, (process, out) in started.items()}
    finally:
        asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
    first, *others = results
    reference = results[first]
    assert reference["import"] == 10 and all(reference["reminders"]) and reference["workbooks"]["year"]
    assert any(reference["lookup"].values()) and reference["export_customers"].count("\n") > 300
    for label in others:
        assert _differences(reference, results[label]) == [], f"{first} and {label} differ"
