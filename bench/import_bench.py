"""Import throughput: 100k customers and 1M purchases from CSV into a fresh SQLite database.

    python main.py --help >/dev/null   # once, so the venv exists
    .venv/bin/python bench/import_bench.py [--customers 100000] [--purchases 1000000]

Prints rows/s for each import (check + apply, end to end) and the process's peak RSS after each step,
which shows memory stays bounded (streamed, not the whole file in RAM); then the same purchases again
(everything already present, nothing written), a file that changes every 10th order (each change
written with an audit entry holding old and new values), and hostile workbooks (one cell in the far
corner, a shared-strings zip bomb), timed. Targets (issue 14): >= 20k rows/s with audit rows written;
far-corner file <= 5 s.
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

from sqlalchemy import text

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


def changed_purchases(ppath: Path, folder: Path) -> Path:
    """The same orders, every 10th moved to another customer with another amount (an ERP's corrections)."""
    out = folder / "purchases-changed.csv"
    with ppath.open(encoding="utf-8-sig", newline="") as src, out.open("w", encoding="utf-8-sig", newline="") as fh:
        reader, writer = csv.reader(src), csv.writer(fh)
        writer.writerow(next(reader))
        for n, row in enumerate(reader):
            if n % 10 == 0:
                row[0] = f"C{(int(row[0][1:]) + 1) % 100_000:07d}"
                row[4] = "1,234.56"
            writer.writerow(row)
    return out


async def timed_import(url: str, kind: str, path: Path, label: str | None = None) -> None:
    engine = make_engine(url)
    started = time.perf_counter()
    async with make_sessionmaker(engine)() as session:
        report = await import_file(session, kind, path)
        assert report.ok, report.errors[:3]
        await session.commit()
        audited = await session.scalar(text("SELECT count(*) FROM audit_log WHERE action = 'update'"))
    seconds = time.perf_counter() - started
    await engine.dispose()
    print(f"{label or kind:22s} {report.rows:>9,} rows  {seconds:7.1f} s  {report.rows / seconds:>9,.0f} rows/s  "
          f"created {report.created:,} updated {report.updated:,} already present {report.unchanged:,}  "
          f"audit entries (updates, all so far) {audited:,}  peak RSS {peak_rss_mb():,.0f} MB", flush=True)


async def hostile(url: str, folder: Path) -> None:
    import zipfile

    from openpyxl import Workbook

    from services.importer import FileProblem

    def corner() -> Path:
        book = Workbook()
        book.active.append(["客户名称", "电话"])
        book.active.append(["远角公司", "020-8888 1234"])
        book.active["XFD1048576"] = "x"
        book.save(folder / "corner.xlsx")
        return folder / "corner.xlsx"

    def bomb() -> Path:
        with zipfile.ZipFile(folder / "corner.xlsx") as source, \
                zipfile.ZipFile(folder / "bomb.xlsx", "w", zipfile.ZIP_DEFLATED) as out:
            for item in source.infolist():
                if item.filename != "xl/sharedStrings.xml":
                    out.writestr(item, source.read(item))
            out.writestr("xl/sharedStrings.xml", b"<sst><si><t>" + b"A" * 100_000_000 + b"</t></si></sst>")
        return folder / "bomb.xlsx"

    engine = make_engine(url)
    for name, make in (("far-corner cell", corner), ("shared-strings bomb", bomb)):
        path = make()
        before = peak_rss_mb()
        started = time.perf_counter()
        async with make_sessionmaker(engine)() as session:
            try:
                report = await import_file(session, "customers", path)
                outcome = f"imported {report.rows} row(s)" if report.ok else f"{report.error_count} problems"
            except FileProblem as exc:
                outcome = "refused: " + exc.problem.render(lambda s: s)[:70]
            await session.rollback()
        print(f"hostile {name:20s} ({path.stat().st_size / 1024:,.0f} KB) {time.perf_counter() - started:5.2f} s  "
              f"{outcome}  peak RSS {before:,.0f} -> {peak_rss_mb():,.0f} MB", flush=True)
    await engine.dispose()


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
        await timed_import(url, "purchases", ppath, "purchases again")
        await timed_import(url, "purchases", changed_purchases(ppath, folder), "purchases, 10% changed")
        await hostile(url, folder)


if __name__ == "__main__":
    asyncio.run(main())
