"""Start-up: how long until the bot answers, and how it answers while the lookup index is still being built.

    .venv/bin/python bench/startup_bench.py [--sizes 100000,1000000]

Uses the demo databases bench/lookup_bench.py makes in bench/out/ (lookup_<size>.sqlite3; made here if
missing). Each size runs in a fresh process, which does what the bot does on start (bot.runner.open_index:
read every active customer's names and phone for exact lookups, then build the whole index in a thread
beside the event loop) and prints:
- ready: from the process start (interpreter, imports, database) until the bot could take updates, and
  the RSS then;
- while building: the event loop's worst lag (a 10 ms ticker; what every reply waits on top of its own
  work) and exact-name lookups answered meanwhile;
- complete: when the whole index was swapped in, and the RSS then;
- the baseline, in the same run and process kind: the start before this change — `build_index` on the
  event loop before taking any update (ready = complete; the loop answers nothing meanwhile).
Target (issue 18): ready <= 5 s at 100k customers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def child(url: str, mode: str, spawned: float) -> dict:
    from sqlalchemy import text

    from bot.db import make_engine, make_sessionmaker
    from bot.memory import settle
    from bot.runner import open_index
    from services.access import Viewer
    from services.lookup import build_index

    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    async with sessions() as session:
        names = [row[0] for row in (await session.execute(
            text("SELECT name FROM customer WHERE archived_at IS NULL ORDER BY id LIMIT 200"))).all()]
    result: dict = {"mode": mode}
    if mode == "before":  # the start until this change: the whole build, then the bot
        async with sessions() as session:
            index = await build_index(session)
        settle()
        result["ready_s"] = result["complete_s"] = time.time() - spawned
        result["ready_rss"] = result["complete_rss"] = rss_mb()
        await engine.dispose()
        return result
    index, building = await open_index(sessions, wait_below=0)
    result["ready_s"], result["ready_rss"] = time.time() - spawned, rss_mb()
    lags, answered, exact_ms = [], 0, []
    everyone = Viewer.everyone()
    while not building.done():
        tick = time.perf_counter()
        await asyncio.sleep(0.01)
        lags.append(time.perf_counter() - tick - 0.01)
        if index.loading:
            started = time.perf_counter()
            found = index.search(names[answered % len(names)], everyone, 8)
            exact_ms.append((time.perf_counter() - started) * 1000)
            answered += bool(found)
    await building
    result["complete_s"], result["complete_rss"] = time.time() - spawned, rss_mb()
    result["worst_lag_ms"] = max(lags) * 1000 if lags else 0.0
    lags.sort()
    result["p99_lag_ms"] = lags[int(len(lags) * 0.99)] * 1000 if lags else 0.0
    result["exact_answered"], result["exact_p99_ms"] = answered, (sorted(exact_ms)[int(len(exact_ms) * 0.99)]
                                                                  if exact_ms else 0.0)
    await engine.dispose()
    return result


def run(url: str, mode: str) -> dict:
    spawned = time.time()
    out = subprocess.run([sys.executable, __file__, "--child", url, mode, repr(spawned)], check=True,
                         capture_output=True, text=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--child", nargs=3)
    args = parser.parse_args()
    if args.child:
        url, mode, spawned = args.child
        print(json.dumps(asyncio.run(child(url, mode, float(spawned)))))
        return
    sys.path.insert(0, str(ROOT / "bench"))
    from lookup_bench import database

    for size in (int(s) for s in args.sizes.split(",")):
        url = asyncio.run(database(size))
        now = run(url, "now")
        before = run(url, "before")
        print(f"{size:>9,} customers | ready {now['ready_s']:5.1f} s (RSS {now['ready_rss']:4.0f} MB) | while "
              f"building: worst loop lag {now['worst_lag_ms']:4.0f} ms, p99 {now['p99_lag_ms']:3.0f} ms, "
              f"{now['exact_answered']} exact lookups answered (p99 {now['exact_p99_ms']:.2f} ms) | complete "
              f"{now['complete_s']:5.1f} s (RSS {now['complete_rss']:4.0f} MB) | before: ready = complete "
              f"{before['ready_s']:5.1f} s (RSS {before['ready_rss']:4.0f} MB), nothing answered meanwhile",
              flush=True)


if __name__ == "__main__":
    main()
