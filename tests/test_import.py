"""An admin imports the ERP's customers, contacts, purchases and interactions from CSV or XLSX files."""

from __future__ import annotations

import csv
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from openpyxl import Workbook
from sqlalchemy import func, select

from models import AuditLog, ContactPerson, Customer, DictionaryEntry, Interaction, Purchase, Stage
from services.customers import create_customer
from services.importer import FileProblem, import_file

TODAY = date(2026, 3, 20)


def write_csv(path: Path, rows: list[list[object]], encoding: str = "utf-8", delimiter: str = ",") -> Path:
    with path.open("w", encoding=encoding, newline="") as fh:
        csv.writer(fh, delimiter=delimiter).writerows(rows)
    return path


def write_xlsx(path: Path, rows: list[list[object]]) -> Path:
    book = Workbook()
    sheet = book.active
    for row in rows:
        sheet.append(row)
    book.save(path)
    return path


async def count(session, model) -> int:
    return await session.scalar(select(func.count()).select_from(model))


async def run(session, kind, path, **kw):
    report = await import_file(session, kind, path, today=TODAY, **kw)
    if report.ok:
        await session.commit()
    else:
        await session.rollback()
    return report


async def label(session, kind, code):
    return (await session.execute(select(DictionaryEntry.id).where(DictionaryEntry.kind == kind,
                                                                   DictionaryEntry.code == code))).scalar_one()


CHINESE_CUSTOMERS = [
    ["客户编号", "客户名称", "简称", "所属区域", "客户性质", "所属行业", "信用状况", "联系策略", "员工数量", "希望代理", "电话"],
    ["C001", "广州市人易软件技术有限公司", "人易软件", "华南", "私营或个体户", "信息技术", "4", "每月联系", "120", "否",
     "020-88881234"],
    ["C002", "上海恒达物流有限公司", "恒达物流", "華東", "State-owned enterprise", "物流", "★★★", "weekly", "1,200", "是", ""],
]


async def test_customers_with_chinese_headers_in_gbk_are_imported(session, tmp_path):
    path = write_csv(tmp_path / "customers.csv", CHINESE_CUSTOMERS, encoding="gbk")
    report = await run(session, "customers", path)
    assert report.ok and report.created == 2
    renyi = (await session.execute(select(Customer).where(Customer.external_id == "C001"))).scalar_one()
    assert renyi.short_name == "人易软件"
    assert renyi.region_id == await label(session, "region", "south")
    assert renyi.nature_id == await label(session, "nature", "private")
    assert (renyi.credit_rating, renyi.employees, renyi.wants_agency) == (4, 120, False)
    # Labels in any locale match: Traditional 華東, English "State-owned enterprise", strategy code "weekly".
    hengda = (await session.execute(select(Customer).where(Customer.external_id == "C002"))).scalar_one()
    assert hengda.region_id == await label(session, "region", "east")
    assert hengda.nature_id == await label(session, "nature", "state_owned")
    assert (hengda.credit_rating, hengda.employees, hengda.wants_agency) == (3, 1200, True)
    assert hengda.contact_strategy_id is not None and hengda.phone is None
    audit = (await session.execute(select(AuditLog).where(AuditLog.action == "import"))).scalar_one()
    assert audit.changes["created"] == 2


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gbk"])
async def test_every_common_csv_encoding_reads_the_same(session, tmp_path, encoding):
    path = write_csv(tmp_path / "c.csv", CHINESE_CUSTOMERS, encoding=encoding)
    report = await run(session, "customers", path)
    assert report.ok, [e.problem for e in report.errors]
    names = set((await session.execute(select(Customer.name))).scalars())
    assert names == {"广州市人易软件技术有限公司", "上海恒达物流有限公司"}


async def test_english_headers_semicolons_and_upsert_by_code_then_by_name(session, tmp_path):
    await create_customer(session, name="Acme Trading Co., Ltd.")  # exists without an ERP code
    await session.commit()
    rows = [["external_id", "name", "short name", "region", "email"],
            ["E-9", "Acme Trading Co., Ltd.", "Acme", "South China", "sales@acme.example"]]
    report = await run(session, "customers", write_csv(tmp_path / "a.csv", rows, delimiter=";"))
    assert (report.created, report.updated) == (0, 1)  # matched by exact name, code linked
    acme = (await session.execute(select(Customer))).scalar_one()
    assert (acme.external_id, acme.short_name, acme.email) == ("E-9", "Acme", "sales@acme.example")

    # Next import: matched by code even though the name changed; blank cells keep old values.
    rows = [["external_id", "name", "short name", "email"], ["E-9", "Acme Trading Group", "", ""]]
    report = await run(session, "customers", write_csv(tmp_path / "b.csv", rows))
    assert (report.created, report.updated) == (0, 1)
    await session.refresh(acme)
    assert (acme.name, acme.short_name, acme.email) == ("Acme Trading Group", "Acme", "sales@acme.example")


async def test_a_bad_file_changes_nothing_and_reports_every_problem_by_row_and_column(session, tmp_path):
    rows = [
        ["客户编号", "客户名称", "所属区域", "信用状况", "员工数量"],
        ["C1", "好客户有限公司", "华南", "5", "10"],
        ["C2", "", "华南", "3", "10"],  # row 3: no name
        ["C3", "坏区域有限公司", "火星", "3", "10"],  # row 4: unknown region
        ["C4", "坏评分有限公司", "华北", "7", "ten"],  # row 5: two problems
        ["C1", "重复有限公司", "华南", "3", "1"],  # row 6: repeats row 2's code
    ]
    report = await run(session, "customers", write_csv(tmp_path / "bad.csv", rows))
    assert not report.ok and not report.applied
    found = {(e.row, e.column, e.value) for e in report.errors}
    assert found == {(3, "客户名称", ""), (4, "所属区域", "火星"), (5, "信用状况", "7"), (5, "员工数量", "ten"),
                     (6, "", "C1")}
    assert all(e.problem.message for e in report.errors)
    assert await count(session, Customer) == 0  # the good row was not written either
    assert await count(session, AuditLog) == 0


async def test_xlsx_with_excel_dates_imports_purchases_and_refreshes_rollups(session, tmp_path):
    customer = await create_customer(session, name="金盛贸易有限公司", external_id="K1")
    await session.commit()
    rows = [
        ["客户编号", "订单号", "交易日期", "产品", "数量", "金额", "付款状态"],
        ["K1", "SO-1", datetime(2025, 12, 1), "打印机", 2, "12,800.50", "已付款"],
        ["K1", "SO-2", 46000, "耗材", 10, "１５００", "未付款"],  # Excel serial 46000 = 2025-12-09
        ["K1", "SO-3", "2026/1/15", "维保合同", None, 3200, None],
    ]
    report = await run(session, "purchases", write_xlsx(tmp_path / "p.xlsx", rows))
    assert report.ok and report.created == 3, [e.problem for e in report.errors]
    await session.refresh(customer)
    assert customer.txn_count == 3
    assert customer.txn_amount_cents == 1_280_050 + 150_000 + 320_000
    assert (customer.first_txn_on, customer.last_txn_on) == (date(2025, 12, 1), date(2026, 1, 15))
    assert customer.stage == Stage.customer
    statuses = dict((await session.execute(select(Purchase.order_no, Purchase.payment_status))).all())
    assert statuses == {"SO-1": "paid", "SO-2": "unpaid", "SO-3": "paid"}
    assert (await session.execute(select(Purchase.purchased_on).where(Purchase.order_no == "SO-2"))).scalar_one() \
        == date(2025, 12, 9)


async def test_reimporting_purchases_adds_nothing_and_a_changed_order_corrects_the_rollups(session, tmp_path):
    customer = await create_customer(session, name="永兴食品有限公司")
    await session.commit()
    rows = [["客户名称", "订单号", "日期", "金额"],
            ["永兴食品有限公司", "A-1", "2026-01-10", "1000"],
            ["永兴食品有限公司", "", "2026-02-10", "2000"]]
    path = write_csv(tmp_path / "p.csv", rows)
    assert (await run(session, "purchases", path)).created == 2
    again = await run(session, "purchases", path)
    assert (again.created, again.updated, again.unchanged) == (0, 0, 2)  # the same order, same values: present
    assert await count(session, Purchase) == 2

    rows[1][3] = "1500"  # the ERP corrected order A-1
    assert (await run(session, "purchases", write_csv(tmp_path / "p2.csv", rows))).updated == 1
    await session.refresh(customer)
    assert (customer.txn_count, customer.txn_amount_cents) == (2, 3500_00)


async def test_purchases_for_unknown_customers_or_in_the_future_are_refused(session, tmp_path):
    await create_customer(session, name="同名公司")
    await create_customer(session, name="同名公司")
    await create_customer(session, name="真实公司", external_id="R1")
    await session.commit()
    rows = [["客户编号", "客户名称", "日期", "金额"],
            ["NOPE", "", "2026-01-01", "1"],
            ["", "同名公司", "2026-01-01", "1"],
            ["R1", "", "2027-01-01", "1"],
            ["R1", "", "2026-01-01", "-5"]]
    report = await run(session, "purchases", write_csv(tmp_path / "p.csv", rows))
    assert sorted(e.row for e in report.errors) == [2, 3, 4, 5]
    assert await count(session, Purchase) == 0


async def test_contacts_are_imported_and_upserted_by_customer_and_name(session, tmp_path):
    customer = await create_customer(session, name="鼎立机械制造有限公司", external_id="D1")
    await session.commit()
    rows = [["客户编号", "联系人", "职务", "手机", "生日", "购买决策角色", "通话的适宜时间"],
            ["D1", "曾志伟", "采购经理", "13800138000", "1980-02-29", "决策者", "下午"],
            ["D1", "单丽", "财务", "13900139000", "1990年5月6日", "影响者", ""]]
    report = await run(session, "contacts", write_csv(tmp_path / "c.csv", rows))
    assert report.created == 2, [e.problem for e in report.errors]
    zeng = (await session.execute(select(ContactPerson).where(ContactPerson.name == "曾志伟"))).scalar_one()
    assert (zeng.customer_id, zeng.birthday, zeng.birthday_mmdd, zeng.decision_role) == \
        (customer.id, date(1980, 2, 29), 229, "decider")

    rows = [["客户编号", "联系人", "职务"], ["D1", "曾志伟", "副总经理"]]
    report = await run(session, "contacts", write_csv(tmp_path / "c2.csv", rows))
    assert (report.created, report.updated) == (0, 1)
    await session.refresh(zeng)
    assert (zeng.title, zeng.mobile) == ("副总经理", "13800138000")


async def test_interactions_import_moves_the_last_contact_and_is_idempotent(session, tmp_path):
    customer = await create_customer(session, name="瑞丰医药有限公司", external_id="Y1")
    await session.commit()
    rows = [["客户编号", "方式", "时间", "摘要"],
            ["Y1", "拜访", "2026-03-01 10:30", "介绍新产品"],
            ["Y1", "电话", "2026-03-10 15:00", "跟进报价"]]
    path = write_csv(tmp_path / "i.csv", rows)
    assert (await run(session, "interactions", path)).created == 2
    assert (await run(session, "interactions", path)).created == 0
    await session.refresh(customer)
    # 15:00 in Asia/Shanghai is 07:00 UTC.
    assert customer.last_contact_at == datetime(2026, 3, 10, 7, 0, tzinfo=UTC)
    assert await count(session, Interaction) == 2


@pytest.mark.parametrize("rows, why", [
    ([["名称随便", "别的"], ["x", "y"]], "no name column"),
    ([["客户名称", "name"], ["x", "y"]], "two columns for one field"),
])
async def test_files_whose_headers_cannot_work_are_refused_whole(session, tmp_path, rows, why):
    with pytest.raises(FileProblem):
        await import_file(session, "customers", write_csv(tmp_path / "h.csv", rows), today=TODAY)


async def test_files_that_are_not_tables_are_refused_with_a_reason(session, tmp_path):
    (tmp_path / "old.xls").write_bytes(b"\xd0\xcf\x11\xe0")
    (tmp_path / "broken.xlsx").write_bytes(b"not a zip")
    (tmp_path / "binary.csv").write_bytes(bytes(range(256)) * 4)
    for name in ("old.xls", "broken.xlsx", "binary.csv", "missing.csv"):
        with pytest.raises(FileProblem):
            await import_file(session, "customers", tmp_path / name, today=TODAY)


async def test_large_files_report_progress(session, tmp_path):
    rows = [["客户名称"]] + [[f"公司{i}"] for i in range(5000)]
    seen = []
    report = await import_file(session, "customers", write_csv(tmp_path / "big.csv", rows), today=TODAY,
                               progress=lambda stage, done, total: seen.append((stage, done, total)))
    assert report.created == 5000
    assert ("checking", 5000, 5000) in seen and ("importing", 5000, 5000) in seen
