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
  event loop before taking any update (ready = complete; the loop answers nothing meanwhile);
- the next start, which opens the index the first one saved (services.lookup rule 7; the file in
  bench/out/): ready = complete, the whole index from its first update — as saved, and after 1 % of the
  customers changed (their updated_at moved: each is read again), with the file's size and the time to open.
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
    from services.lookup import SavedIndex, build_index

    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    saved = SavedIndex(saved_path(url), "bench")
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
    if mode == "now":
        saved.path.unlink(missing_ok=True)  # a first start: nothing saved yet
    if mode == "changed":  # 1 % of the customers changed since the index was saved (stamps only: same names)
        changing = time.time()
        async with sessions() as session:
            await session.execute(text("UPDATE customer SET updated_at = CURRENT_TIMESTAMP || '.000001' "
                                       "WHERE id % 100 = 7"))
            await session.commit()
        spawned += time.time() - changing  # (the change is not part of the start)
    opening = time.perf_counter()
    index, building = await open_index(sessions, wait_below=0, saved=saved)
    result["open_s"] = time.perf_counter() - opening
    result["ready_s"], result["ready_rss"] = time.time() - spawned, rss_mb()
    result["loading_at_start"] = index.loading
    lags, answered, exact_ms = [], 0, []
    everyone = Viewer.everyone()
    whole = None if index.loading else (time.time() - spawned, rss_mb())  # the saved index opened: whole now
    while not building.done():
        tick = time.perf_counter()
        await asyncio.sleep(0.01)
        lags.append(time.perf_counter() - tick - 0.01)
        if whole is None and not index.loading:
            whole = time.time() - spawned, rss_mb()
        if index.loading:
            started = time.perf_counter()
            found = index.search(names[answered % len(names)], everyone, 8)
            exact_ms.append((time.perf_counter() - started) * 1000)
            answered += bool(found)
    await building
    result["background_s"] = time.time() - spawned  # the build, or a saved index saved anew (rule 7)
    result["complete_s"], result["complete_rss"] = whole or (time.time() - spawned, rss_mb())
    result["saved_mb"] = saved.path.stat().st_size / 2**20 if saved.path.exists() else 0.0
    result["worst_lag_ms"] = max(lags) * 1000 if lags else 0.0
    lags.sort()
    result["p99_lag_ms"] = lags[int(len(lags) * 0.99)] * 1000 if lags else 0.0
    result["exact_answered"], result["exact_p99_ms"] = answered, (sorted(exact_ms)[int(len(exact_ms) * 0.99)]
                                                                  if exact_ms else 0.0)
    await engine.dispose()
    return result


def saved_path(url: str) -> Path:
    return ROOT / "bench" / "out" / (Path(url.split("///", 1)[1]).stem + ".index.bin")


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
        for mode, label in (("saved", "as saved"), ("changed", "1% changed since")):
            again = run(url, mode)
            print(f"{'':>9}   next start, saved index {label}: ready = complete {again['complete_s']:5.1f} s "
                  f"(RSS {again['complete_rss']:4.0f} MB; opening it {again['open_s']:.2f} s; file "
                  f"{again['saved_mb']:.0f} MB){' — it was built, not opened' if again['loading_at_start'] else ''}"
                  + (f"; saved anew beside the bot by {again['background_s']:.1f} s, worst loop lag meanwhile "
                     f"{again['worst_lag_ms']:.0f} ms" if again["background_s"] - again["complete_s"] > 1 else ""),
                  flush=True)


if __name__ == "__main__":
    main()
