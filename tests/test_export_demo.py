"""Exports open in Excel and import back unchanged; demo data is realistic, deterministic and consistent."""

import csv
from datetime import date

import pytest
from openpyxl import load_workbook
from sqlalchemy import func, select

from models import ContactPerson, Customer, Feedback, Interaction, Purchase, User
from services import demo
from services.customers import archive_customer
from services.exporter import export
from services.importer import import_file

TODAY = date(2026, 3, 20)


async def snapshot(session):
    rows = (await session.execute(select(Customer).order_by(Customer.name))).scalars().all()
    return [(c.name, c.short_name, c.region_id, c.industry_id, c.credit_rating, c.owner_id, c.stage, c.phone,
             c.contact_strategy_id, c.txn_count, c.txn_amount_cents) for c in rows]


async def test_demo_data_is_realistic_and_its_rollups_match_the_rows(session):
    summary = await demo.generate(session, customers=60, seed=7, today=TODAY)
    await session.commit()
    assert summary.customers == 60 and summary.purchases > 100 and summary.contacts >= 60
    roles = set((await session.execute(select(User.role))).scalars())
    assert roles == {"admin", "manager", "rep"}
    names = (await session.execute(select(Customer.name, Customer.short_name))).all()
    assert any(n.endswith("有限公司") for n, _ in names) and all(s for _, s in names)
    assert await session.scalar(select(func.count(ContactPerson.id)).where(ContactPerson.birthday.is_not(None))) > 0
    assert await session.scalar(select(func.count(Interaction.id))) > 0
    for customer in (await session.execute(select(Customer))).scalars():
        live = Purchase.customer_id == customer.id
        count, total, first, last = (await session.execute(select(
            func.count(Purchase.id), func.coalesce(func.sum(Purchase.amount_cents), 0),
            func.min(Purchase.purchased_on), func.max(Purchase.purchased_on)).where(live))).one()
        assert (customer.txn_count, customer.txn_amount_cents, customer.first_txn_on, customer.last_txn_on) == \
            (count, total, first, last)
        contact = await session.scalar(select(func.max(Interaction.occurred_at)).where(Interaction.customer_id == customer.id))
        assert customer.last_contact_at == contact
        assert customer.last_txn_on is None or customer.last_txn_on <= TODAY


async def test_the_same_seed_gives_the_same_data(engine, tmp_path):
    from bot.db import make_sessionmaker

    async with make_sessionmaker(engine)() as s:
        await demo.generate(s, customers=20, seed=11, today=TODAY)
        first = [(c.name, c.txn_amount_cents) for c in (await s.execute(select(Customer).order_by(Customer.id))).scalars()]
        await s.rollback()
    async with make_sessionmaker(engine)() as s:
        await demo.generate(s, customers=20, seed=11, today=TODAY)
        second = [(c.name, c.txn_amount_cents) for c in (await s.execute(select(Customer).order_by(Customer.id))).scalars()]
        await s.rollback()
    async with make_sessionmaker(engine)() as s:
        await demo.generate(s, customers=20, seed=12, today=TODAY)
        other = [(c.name, c.txn_amount_cents) for c in (await s.execute(select(Customer).order_by(Customer.id))).scalars()]
        await s.rollback()
    assert first == second and first != other


@pytest.mark.parametrize("fmt, language", [("csv", "zh_Hans"), ("xlsx", "zh_Hant"), ("csv", "en")])
async def test_exported_customers_import_back_unchanged(session, tmp_path, fmt, language):
    await demo.generate(session, customers=30, seed=3, today=TODAY)
    await session.commit()
    before = await snapshot(session)
    path = tmp_path / f"customers.{fmt}"
    assert await export(session, "customers", path, fmt=fmt, language=language) == 30

    report = await import_file(session, "customers", path, today=TODAY)
    assert report.ok, [(e.row, e.column, e.value, e.problem) for e in report.errors[:5]]
    assert (report.created, report.updated, report.unchanged) == (0, 0, 30)
    await session.commit()
    assert await snapshot(session) == before


async def test_exports_have_localized_headers_number_formats_and_leave_out_archived(session, tmp_path):
    await demo.generate(session, customers=10, seed=5, today=TODAY)
    await session.commit()
    victim = (await session.execute(select(Customer).order_by(Customer.id))).scalars().first()
    await archive_customer(session, victim.id)
    await session.commit()

    path = tmp_path / "c.csv"
    assert await export(session, "customers", path, fmt="csv", language="zh_Hans") == 9
    with path.open(encoding="utf-8-sig") as fh:
        header = next(csv.reader(fh))
    assert header[:3] == ["客户编号", "客户名称", "简称"] and "交易金额" in header and "最近交易" in header
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")  # BOM: Excel shows the Chinese right
    assert await export(session, "customers", tmp_path / "all.csv", include_archived=True) == 10

    xlsx = tmp_path / "p.xlsx"
    purchases = await export(session, "purchases", xlsx, fmt="xlsx", language="en")
    sheet = load_workbook(xlsx).active
    assert [c.value for c in sheet[1]][:4] == ["customer_external_id", "customer_name", "order_no", "purchased_on"]
    amount_col = [c.value for c in sheet[1]].index("amount")
    assert sheet.cell(row=2, column=amount_col + 1).number_format == "#,##0.00"
    assert sheet.max_row == purchases + 1

    assert await export(session, "feedback", tmp_path / "f.csv") == await session.scalar(
        select(func.count(Feedback.id)).join(Customer).where(Customer.archived_at.is_(None)))
