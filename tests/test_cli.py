"""An admin drives FieldCRM from the command line; bad input gets a clear, localized message."""

import csv

import pytest

from bot.cli import main


def write_csv(path, rows, encoding="utf-8"):
    with path.open("w", encoding=encoding, newline="") as fh:
        csv.writer(fh).writerows(rows)
    return path


async def test_the_sandbox_prepares_demo_data_and_demo_people_once(engine):
    """`run` without BOT_TOKEN starts the sandbox (driven end to end in test_e2e_sandbox); its preparation:"""
    from sqlalchemy import func, select

    from bot.db import make_sessionmaker
    from bot.sandbox.run import prepare
    from models import Customer, User

    sessions = make_sessionmaker(engine)
    personas = await prepare(sessions, customers=40)
    assert [p.role for p in personas] == ["admin", "manager", "rep", "rep", "guest"]
    assert personas[3].language == "en" and len({p.telegram_id for p in personas}) == 5
    again = await prepare(sessions, customers=40)  # a restart finds the same people and adds no data
    assert [(p.telegram_id, p.name) for p in again] == [(p.telegram_id, p.name) for p in personas]
    async with sessions() as session:
        assert await session.scalar(select(func.count(Customer.id))) == 40
        rep = await session.scalar(select(User).where(User.telegram_id == personas[2].telegram_id))
        manager = await session.scalar(select(User).where(User.telegram_id == personas[1].telegram_id))
        assert rep.manager_id == manager.id


def test_migrate_reports_the_schema_revision_in_the_chosen_language(cli_env, capsys):
    from alembic.script import ScriptDirectory

    from bot.db import alembic_config

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert main(["--lang", "en", "migrate"]) == 0
    assert f"is at schema revision {head}" in capsys.readouterr().out


def test_import_of_a_bad_file_exits_nonzero_with_a_row_by_row_report_and_changes_nothing(cli_env, tmp_path, capsys):
    bad = write_csv(tmp_path / "bad.csv", [["客户名称", "所属区域"], ["甲公司", "华南"], ["乙公司", "月球"]])
    assert main(["import", "customers", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "文件未导入" in err and "3\t所属区域\t月球\t字典中没有“月球”" in err

    assert main(["--lang", "en", "export", "customers", "-o", str(tmp_path / "out.csv")]) == 0
    assert "Exported 0 rows" in capsys.readouterr().out


def test_import_dry_run_then_real_import_then_export(cli_env, tmp_path, capsys):
    good = write_csv(tmp_path / "good.csv", [["客户名称", "所属区域"], ["甲公司", "华南"], ["乙公司", "华北"]], "gbk")
    assert main(["--lang", "en", "import", "customers", str(good), "--dry-run"]) == 0
    assert "Nothing was changed" in capsys.readouterr().out
    assert main(["--lang", "en", "import", "customers", str(good)]) == 0
    assert "2 created" in capsys.readouterr().out
    out = tmp_path / "c.xlsx"
    assert main(["export", "customers", "--format", "xlsx", "-o", str(out)]) == 0
    assert out.exists() and "2" in capsys.readouterr().out


def test_unreadable_files_and_bad_arguments_are_explained(cli_env, tmp_path, capsys):
    assert main(["--lang", "en", "import", "customers", str(tmp_path / "nope.csv")]) == 2
    assert "no such file" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        main(["--lang", "en", "import", "planets", "x.csv"])
    assert exited.value.code == 2
    assert main(["--lang", "en", "demo-data", "--customers", "0"]) == 2
    assert main(["--lang", "en", "demo-data", "--today", "someday"]) == 2
    assert "is not a date" in capsys.readouterr().err


def test_users_are_added_listed_promoted_and_disabled(cli_env, capsys):
    assert main(["--lang", "en", "user", "add", "王经理", "--role", "manager", "--telegram-id", "1001"]) == 0
    assert main(["--lang", "en", "user", "add", "李业务", "--telegram-id", "1002", "--manager", "1001"]) == 0
    assert main(["--lang", "en", "user", "add", "重复", "--telegram-id", "1002"]) == 2
    assert "already belongs" in capsys.readouterr().err
    assert main(["--lang", "en", "user", "add", "x", "--timezone", "Mars/Base"]) == 2
    assert main(["--lang", "en", "user", "role", "1002", "admin"]) == 0
    assert main(["--lang", "en", "user", "disable", "李业务"]) == 0
    capsys.readouterr()
    assert main(["user", "list"]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert listing == ["1\t1001\tmanager\t王经理\t启用", "2\t1002\tadmin\t李业务\t停用"]


def test_demo_data_command_fills_the_database(cli_env, capsys):
    assert main(["--lang", "en", "demo-data", "--customers", "25", "--seed", "1", "--today", "2026-03-20"]) == 0
    assert "25 customers" in capsys.readouterr().out


def test_export_report_writes_the_analyses_spreadsheet(cli_env, tmp_path, capsys):
    from openpyxl import load_workbook

    assert main(["demo-data", "--customers", "30"]) == 0
    out = tmp_path / "report.xlsx"
    assert main(["--lang", "en", "export", "report", "--period", "year", "--format", "xlsx", "-o", str(out)]) == 0
    assert "written to" in capsys.readouterr().out
    book = load_workbook(out)
    assert "Key accounts" in book.sheetnames and book["Key accounts"].max_row > 1
    assert main(["--lang", "en", "export", "report", "--format", "csv"]) == 2  # a usage error
    assert "xlsx" in capsys.readouterr().err
    # RFM over two years of purchases scores at least as many customers as over 90 days.
    scored = {}
    for days in (90, 730):
        path = tmp_path / f"rfm{days}.xlsx"
        assert main(["--lang", "en", "export", "report", "--format", "xlsx", "--rfm-days", str(days),
                     "-o", str(path)]) == 0
        scored[days] = load_workbook(path)["RFM"].max_row
    assert scored[730] > scored[90]
    with pytest.raises(SystemExit) as refused:
        main(["--lang", "en", "export", "report", "--format", "xlsx", "--rfm-days", "7"])
    assert refused.value.code == 2 and "--rfm-days" in capsys.readouterr().err


async def test_the_sandbox_refuses_a_database_with_real_customers(engine):
    import pytest

    from bot.db import make_sessionmaker
    from bot.sandbox.run import RealData, prepare
    from services.customers import create_customer
    from services.users import add_user

    sessions = make_sessionmaker(engine)
    async with sessions() as session:
        real = await add_user(session, name="真实经理", role="manager")
        await create_customer(session, name="真实客户有限公司", owner_id=real.id)
        await session.commit()
    with pytest.raises(RealData):
        await prepare(sessions, customers=10)
    async with sessions() as session:
        from models import User

        assert (await session.get(User, real.id)).telegram_id is None  # nobody got a sandbox id


def test_a_past_report_can_be_made_again_and_says_what_it_covers(cli_env, tmp_path, capsys):
    from openpyxl import load_workbook

    assert main(["demo-data", "--customers", "40", "--seed", "7", "--today", "2026-12-02"]) == 0
    first, second = tmp_path / "a.xlsx", tmp_path / "b.xlsx"
    for path in (first, second):  # no --format: a report is a workbook
        assert main(["--lang", "en", "export", "report", "--period", "month", "--today", "2026-12-02",
                     "-o", str(path)]) == 0
    assert "2026-11-01 – 2026-11-30" not in capsys.readouterr().err
    books = [load_workbook(p) for p in (first, second)]
    cover = dict((row[0].value, row[1].value) for row in books[0]["About"].iter_rows())
    assert cover["Period"] == "2026-11-02 – 2026-12-01" and "days of purchases" in cover["RFM window"]
    assert cover["By"] == "command line (export report)" and cover["Customers"] == "all customers you may see"
    assert books[0].sheetnames[0] == "About"
    # The same data and the same date give the same workbook, cell by cell (the cover's time aside).
    for name in books[0].sheetnames[1:]:
        cells = [[[c.value for c in row] for row in book[name].iter_rows()] for book in books]
        assert cells[0] == cells[1], name
    # Every customer row carries its ERP code; changes are numbers, not "3→1".
    visit_first = books[0]["Visit first"]
    assert [c.value for c in visit_first[1]][:2] == ["Customer code", "Customer"]
    assert all(isinstance(c.value, int) for row in visit_first.iter_rows(min_row=2) for c in row[3:7])
    rfm = books[0]["RFM"]
    longest = max(len(str(c.value)) for (c,) in rfm.iter_rows(min_row=2, min_col=2, max_col=2))
    assert rfm.column_dimensions["B"].width >= min(60, longest)  # names are not cut off
    assert main(["--lang", "en", "export", "report", "--today", "2026-13-40"]) == 2
