"""One run of the parity scenario (tests/test_parity.py): on the database named by argv[1], make the same
seeded data, then write what a user would get — reminders at four instants (as sets and in order), the
managers' workbooks cell by cell, lookup lists, an import's ids and the customer export — as JSON to
argv[2]. The test runs it on SQLite and PostgreSQL and under two PYTHONHASHSEEDs and compares.

    python tests/parity_run.py DATABASE_URL OUT.json
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from datetime import UTC, date, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TODAY = date(2026, 12, 2)
INSTANTS = [datetime(2026, 12, 2, 1, 30, tzinfo=UTC),  # a weekday morning in Shanghai
            datetime(2026, 12, 2, 16, 0, tzinfo=UTC),  # local midnight in Shanghai
            datetime(2027, 3, 14, 7, 0, tzinfo=UTC),  # New York's clocks go forward that night
            datetime(2028, 1, 6, 1, 30, tzinfo=UTC)]  # 400 days on
QUERIES = ["华星", "上海", "贸易", "李总", "zhang", "wl", "物流 上海", "1234", "tech", "科技有限公司", "王经理",
           "北京 电子", "shanghai", "guoji", "食品", "138", "Trading", "医疗器械", "建材 广州", "阿"]
IMPORT = "客户名称,客户编号,电话\n" + "".join(
    f"{name},P{n:04d},021-6{n:03d}{n:04d}\n" for n, name in enumerate(
        ["上海明远贸易有限公司", "北京嘉禾科技有限公司", "广州恒通物流有限公司", "深圳华信电子有限公司", "杭州金源食品有限公司",
         "成都蓝天建材有限公司", "武汉长江化工有限公司", "西安鼎鸿新材料有限公司", "南京东方包装有限公司", "天津海河机械有限公司"]))


async def run(url: str) -> dict:
    from bot.db import make_engine, make_sessionmaker, upgrade
    from bot.report_view import xlsx_headings
    from services import demo, reminders
    from services.access import Viewer
    from services.exporter import export
    from services.importer import import_file
    from services.lookup import build_index
    from services.reports import build, write_xlsx
    from services.rfm import score_all

    engine = make_engine(url)
    await upgrade(engine)
    sessions = make_sessionmaker(engine)
    out: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        async with sessions() as session:
            await demo.generate(session, customers=300, seed=7, today=TODAY)
            await session.commit()
            source = folder / "new.csv"
            source.write_text(IMPORT, encoding="utf-8")
            report = await import_file(session, "customers", source, today=TODAY)
            await session.commit()
            out["import"] = report.created
            await score_all(session, TODAY)
            await session.commit()
        async with sessions() as session:
            due = []
            for instant in INSTANTS:
                found = await reminders.compute_due(session, instant, ordered=True)
                due.append([[d.user_id, d.kind, d.customer_id, d.due_on.isoformat(), d.period] for d in found])
            out["reminders"] = due
            from openpyxl import load_workbook

            books = {}
            for kind in ("week", "month", "year"):
                made = await build(session, Viewer.everyone(), kind=kind, today=TODAY, language="en")
                path = write_xlsx(made, folder / f"{kind}.xlsx", xlsx_headings(lambda text: text))
                book = load_workbook(path, read_only=True)
                books[kind] = {ws.title: [[_cell(v) for v in row] for row in ws.iter_rows(values_only=True)]
                               for ws in book.worksheets}
                book.close()
            out["workbooks"] = books
            index = await build_index(session, workers=1)
            out["lookup"] = {q: [[m.customer_id, m.score, m.why] for m in index.search(q, Viewer.everyone(), 10)]
                             for q in QUERIES}
            for kind in ("customers", "contacts", "purchases"):
                path = folder / f"{kind}.csv"
                await export(session, kind, path, language="en")
                out[f"export_{kind}"] = path.read_text(encoding="utf-8-sig")
    await engine.dispose()
    return out


def _cell(value):
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    return value


if __name__ == "__main__":
    result = asyncio.run(run(sys.argv[1]))
    Path(sys.argv[2]).write_text(json.dumps(result, ensure_ascii=False, sort_keys=True), encoding="utf-8")
