"""Import throughput: 100k customers and 1M purchases from CSV into a fresh SQLite database.

    python main.py --help >/dev/null   # once, so the venv exists
    .venv/bin/python bench/import_bench.py [--customers 100000] [--purchases 1000000]

Prints rows/s for each import (check + apply, end to end) and the process's peak RSS after each step,
which shows memory stays bounded (streamed, not the whole file in RAM). Target: >= 20k rows/s.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import random
import resource
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.db import make_engine, make_sessionmaker, upgrade
from services.importer import import_file


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_files(folder: Path, customers: int, purchases: int) -> tuple[Path, Path]:
    rng = random.Random(1)
    regions = ["华南", "华东", "华中", "华北", "西南", "西北", "东北"]
    cpath = folder / "customers.csv"
    with cpath.open("w", encoding="utf-8-sig", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["客户编号", "客户名称", "简称", "所属区域", "信用状况", "电话"])
        for i in range(customers):
            w.writerow([f"C{i:07d}", f"测试客户{i}有限公司", f"客户{i}", regions[i % 7], rng.randint(1, 5),
                        f"020-{rng.randrange(10**7, 10**8)}"])
    ppath = folder / "purchases.csv"
    start = date(2023, 1, 1)
    with ppath.open("w", encoding="utf-8-sig", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["客户编号", "订单号", "交易日期", "产品", "金额"])
        for i in range(purchases):
            day = start + timedelta(days=rng.randrange(1000))
            w.writerow([f"C{rng.randrange(customers):07d}", f"SO{i:08d}", day.isoformat(), "服务器",
                        f"{rng.randint(100, 99999):,}.{rng.randint(0, 99):02d}"])
    return cpath, ppath


async def timed_import(url: str, kind: str, path: Path) -> None:
    engine = make_engine(url)
    started = time.perf_counter()
    async with make_sessionmaker(engine)() as session:
        report = await import_file(session, kind, path)
        assert report.ok, report.errors[:3]
        await session.commit()
    seconds = time.perf_counter() - started
    await engine.dispose()
    print(f"{kind:10s} {report.rows:>9,} rows  {seconds:7.1f} s  {report.rows / seconds:>9,.0f} rows/s  "
          f"created {report.created:,}  peak RSS {peak_rss_mb():,.0f} MB", flush=True)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--purchases", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        t0 = time.perf_counter()
        cpath, ppath = write_files(folder, args.customers, args.purchases)
        print(f"files written in {time.perf_counter() - t0:.1f} s "
              f"({cpath.stat().st_size / 2**20:.0f} MB + {ppath.stat().st_size / 2**20:.0f} MB); "
              f"peak RSS {peak_rss_mb():,.0f} MB", flush=True)
        url = f"sqlite+aiosqlite:///{folder / 'bench.sqlite3'}"
        engine = make_engine(url)
        await upgrade(engine)
        await engine.dispose()
        print(f"after migrations: peak RSS {peak_rss_mb():,.0f} MB", flush=True)
        await timed_import(url, "customers", cpath)
        await timed_import(url, "purchases", ppath)


if __name__ == "__main__":
    asyncio.run(main())
