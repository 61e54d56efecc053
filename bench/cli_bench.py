"""Command-line start-up: how long a person waits for `reminders due --json` and `export report` on the demo
data, and what the import time goes to.

    .venv/bin/python bench/cli_bench.py [--customers 300] [--runs 5]

A demo data set (`demo-data --seed 7 --today 2026-12-02`) in a temporary DATA_DIR; each command run
`--runs` times as a person runs it (a new process through main.py), best and median wall time; then the
biggest imports of one run (`python -X importtime`), and whether the bot framework (aiogram) or the charts
(matplotlib) were imported — they must not be (issue 18: 3.4 s of `export report` went to aiogram).
Target: `reminders due --json` <= 1.0 s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = ROOT / ".venv" / "bin" / "python"
COMMANDS = {"reminders due --json": ["reminders", "due", "--json", "--now", "2026-12-02T01:30:00+00:00"],
            "export report": ["export", "report", "--today", "2026-12-02", "-o", "{tmp}/report.xlsx"]}


def run(args: list[str], env: dict[str, str], *extra: str) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run([str(PYTHON), *extra, str(ROOT / "main.py"), *args], env=env, capture_output=True,
                          text=True, check=True)
    return time.perf_counter() - started, done.stderr


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, default=300)
    parser.add_argument("--runs", type=int, default=5)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "DATA_DIR": tmp, "FIELDCRM_NO_BOOTSTRAP": "1"}
        env.pop("BOT_TOKEN", None)
        env.pop("DATABASE_URL", None)
        run(["demo-data", "--customers", str(options.customers), "--seed", "7", "--today", "2026-12-02"], env)
        for label, args in COMMANDS.items():
            args = [a.format(tmp=tmp) for a in args]
            times = [run(args, env)[0] for _ in range(options.runs)]
            _, trace = run(args, env, "-X", "importtime")
            rows = [line.split("|") for line in trace.splitlines()
                    if line.startswith("import time:") and line.split("|")[1].strip().isdigit()]
            top = sorted((parts for parts in rows if not parts[2].startswith("  ")),  # top-level imports
                         key=lambda parts: -int(parts[1]))[:5]
            heavy = [name for name in ("aiogram", "matplotlib") if any(
                line.split("|")[-1].strip() == name for line in trace.splitlines() if "|" in line)]
            print(f"{label:<22} best {min(times):.2f} s, median {statistics.median(times):.2f} s "
                  f"({options.runs} runs, {options.customers} customers); imports: "
                  + ", ".join(f"{parts[2].strip()} {int(parts[1]) / 1e6:.2f} s" for parts in top)
                  + f"; bot framework or charts imported: {', '.join(heavy) or 'none'}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
