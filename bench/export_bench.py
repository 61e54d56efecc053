"""The managers' workbook: seconds and peak memory to write it, at 20k, 100k and 1M customers.

    .venv/bin/python bench/export_bench.py [--sizes 20000,100000,1000000] [--baseline-up-to 20000]

A demo data set of 20,000 customers with three years of history is made once (bench/out/), the year's
report is built from it (`services.reports.build`, timed) and written; for larger sizes the same report is
scaled up (every customer row copied under new ids: RFM, visit first, key accounts, sales by customer),
which is what grows with a customer base. Each size is written, in a fresh process each so peak memory is
its own, by
- the product: services.workbook (services.xlsxstream: sheet XML straight into the zip);
- XlsxWriter in constant-memory mode and openpyxl's write-only mode (the streaming writers the issue named;
  XlsxWriter was the product's first choice, 3-4x slower);
- the baseline: the cell-by-cell openpyxl writer the product used until 2026-12 (up to --baseline-up-to;
  it finds each new row's number by scanning the sheet, so its time grows with the square of the rows).
Targets (issue 21): <= 3 s at 100k and <= 30 s at 1M, and no bot framework imported.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import pickle
import resource
import subprocess
import sys
import time
from dataclasses import replace
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
OUT = ROOT / "bench" / "out"
TODAY = date(2026, 12, 2)
BASE = 20_000


async def base_report() -> Path:
    """The year's report at 20k customers, pickled (made once)."""
    from bot.db import make_engine, make_sessionmaker, upgrade
    from services import demo
    from services.access import Viewer
    from services.reports import build

    OUT.mkdir(parents=True, exist_ok=True)
    pickled = OUT / f"report_{BASE}.pickle"
    if pickled.exists():
        return pickled
    engine = make_engine(f"sqlite+aiosqlite:///{OUT / f'export_{BASE}.sqlite3'}")
    await upgrade(engine)
    async with make_sessionmaker(engine)() as session:
        started = time.perf_counter()
        await demo.generate(session, customers=BASE, seed=21, today=TODAY)
        await session.commit()
        print(f"  made {BASE:,} demo customers with history in {time.perf_counter() - started:.0f} s", flush=True)
        started = time.perf_counter()
        report = await build(session, Viewer.everyone(), kind="year", today=TODAY, language="en")
        print(f"  built the year's report in {time.perf_counter() - started:.1f} s", flush=True)
    await engine.dispose()
    pickled.write_bytes(pickle.dumps(report))
    return pickled


def scaled(report, size: int):
    """The report with every customer row copied until it covers `size` customers."""
    factor = max(1, size // max(1, len(report.customers)))
    if factor == 1:
        return report
    step = max(report.customers) + 1
    customers, scores, previous, rows, accounts = {}, {}, {}, [], []
    for k in range(factor):
        shift = k * step
        customers.update({cid + shift: info._replace(id=cid + shift) for cid, info in report.customers.items()})
        scores.update({cid + shift: s for cid, s in report.rfm.scores.items()})
        previous.update({cid + shift: s for cid, s in report.rfm.previous.items()})
        rows += [replace(p, key=p.key + shift) if p.key is not None else p for p in report.performance.rows]
        accounts += [replace(a, customer_id=a.customer_id + shift) for a in report.key_accounts]
    rfm = replace(report.rfm, scores=scores, previous=previous)
    return replace(report, customers=customers, rfm=rfm, key_accounts=accounts,
                   performance=replace(report.performance, rows=rows))


def write_one(writer: str, size: int, pickled: str, target: str) -> dict:
    """In this process: load, scale, write with `writer`; seconds and peak RSS."""
    from bot.report_words import xlsx_headings

    report = scaled(pickle.loads(Path(pickled).read_bytes()), size)
    headings = xlsx_headings(lambda text: text)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.perf_counter()
    if writer == "product":
        from services.workbook import write

        write(report, Path(target), headings)
    else:
        from services.workbook import tables

        {"baseline": cell_by_cell, "write-only": write_only, "xlsxwriter": xlsxwriter_constant_memory}[writer](
            tables(report, headings), Path(target))
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds": seconds, "peak_mb": peak, "grew_mb": peak - before,
            "rows": len(report.rfm.scores), "framework": "aiogram" in sys.modules}


def cell_by_cell(tables, path: Path) -> None:
    """The writer until 2026-12: openpyxl's normal mode, cell objects, widths, formats, then save."""
    from openpyxl import Workbook
    from openpyxl.styles import Font

    from services.safecells import as_text_cells
    from services.workbook import display_width

    book = Workbook()
    book.remove(book.active)
    bold = Font(bold=True)
    for table in tables:
        ws = book.create_sheet(table.title[:31])
        ws.append(table.header)
        for cell in ws[1]:
            cell.font = bold
        widths = [display_width(title, None) for title in table.header]
        for row in table.rows:
            ws.append(row)
            as_text_cells(ws[ws.max_row])
            for n, value in enumerate(row):
                if n < len(widths):
                    widths[n] = max(widths[n], display_width(value, table.formats.get(n + 1)))
        for column, number_format in table.formats.items():
            for (cell,) in ws.iter_rows(min_row=2, min_col=column, max_col=column):
                cell.number_format = number_format
        for n, width in enumerate(widths, 1):
            ws.column_dimensions[ws.cell(1, n).column_letter].width = max(8, min(60, width + 2))
        if table.freeze:
            ws.freeze_panes = "A2"
    book.save(path)


def xlsxwriter_constant_memory(tables, path: Path) -> None:
    """XlsxWriter, constant-memory mode: rows written as they come, column formats and widths first."""
    import xlsxwriter

    from services.workbook import widths

    book = xlsxwriter.Workbook(str(path), {"constant_memory": True, "strings_to_formulas": False,
                                           "strings_to_urls": False, "strings_to_numbers": False})
    bold = book.add_format({"bold": True})
    formats = {}
    for table in tables:
        ws = book.add_worksheet(table.title[:31])
        for n, width in enumerate(widths(table)):
            code = table.formats.get(n + 1)
            ws.set_column(n, n, width, formats.setdefault(code, book.add_format({"num_format": code})) if code else None)
        ws.write_row(0, 0, table.header, bold)
        for r, row in enumerate(table.rows, 1):
            ws.write_row(r, 0, row)
        if table.freeze:
            ws.freeze_panes(1, 0)
    book.close()


def write_only(tables, path: Path) -> None:
    """openpyxl's write-only mode: cells made one by one (WriteOnlyCell for the formatted ones)."""
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.utils import get_column_letter

    from services.workbook import widths

    book = Workbook(write_only=True)
    for table in tables:
        ws = book.create_sheet(table.title[:31])
        for n, width in enumerate(widths(table), 1):
            ws.column_dimensions[get_column_letter(n)].width = width
        if table.freeze:
            ws.freeze_panes = "A2"
        ws.append(table.header)
        formatted = {n - 1: f for n, f in table.formats.items()}
        for row in table.rows:
            if formatted:
                cells = []
                for n, value in enumerate(row):
                    if n in formatted and value is not None:
                        cell = WriteOnlyCell(ws, value=value)
                        cell.number_format = formatted[n]
                        cells.append(cell)
                    else:
                        cells.append(value)
                ws.append(cells)
            else:
                ws.append(row)
    book.save(path)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="20000,100000,1000000")
    parser.add_argument("--baseline-up-to", type=int, default=20_000)  # it is quadratic: 100k would take an hour
    parser.add_argument("--one", nargs=4, help=argparse.SUPPRESS)  # writer size pickle target (child process)
    args = parser.parse_args()
    if args.one:
        writer, size, pickled, target = args.one
        print(json.dumps(write_one(writer, int(size), pickled, target)))
        return
    pickled = asyncio.run(base_report())
    for size in (int(s) for s in args.sizes.split(",")):
        line = [f"{size:>9,} customers"]
        for writer in ("product", "xlsxwriter", "write-only", "baseline"):
            if writer == "baseline" and size > args.baseline_up_to:
                line.append("baseline (cell by cell) not run above --baseline-up-to")
                continue
            target = OUT / f"report_{size}_{writer}.xlsx"
            done = subprocess.run([sys.executable, __file__, "--one", writer, str(size), str(pickled), str(target)],
                                  capture_output=True, text=True)
            if done.returncode:
                line.append(f"{writer} failed: {done.stderr.strip().splitlines()[-1]}")
                continue
            figures = json.loads(done.stdout)
            line.append(f"{writer} {figures['seconds']:.1f} s, peak {figures['peak_mb']:.0f} MB "
                        f"(+{figures['grew_mb']:.0f} MB writing)"
                        + (" (bot framework imported!)" if figures["framework"] else ""))
            target.unlink(missing_ok=True)
        print(" | ".join(line), flush=True)


if __name__ == "__main__":
    main()
