"""Managers' reports: the analyses over a team's data for a period, as chat text with charts and as a
spreadsheet, through /report."""

from __future__ import annotations

import os
import re
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from aiogram.methods import SendDocument, SendPhoto
from openpyxl import load_workbook
from sqlalchemy import select, update

from bot.callbacks import ReportCallback
from bot.report_view import xlsx_headings
from models import Feedback, Role
from services.access import viewer_for
from services.customers import create_customer
from services.feedback import record_feedback
from services.interactions import log_interaction
from services.purchases import record_purchase
from services.reports import build, period_for, write_xlsx
from services.users import add_user
from tests.botkit import button_update, make_app, person, text_update

TODAY = datetime.now(UTC).date()
BOSS, REP, OUTSIDER = 9100, 9101, 9102


async def _world(session):
    boss = await add_user(session, name="Boss", role=Role.manager, telegram_id=BOSS, language="en")
    rep = await add_user(session, name="Lee", telegram_id=REP, manager_id=boss.id, language="en")
    other_boss = await add_user(session, name="Other boss", role=Role.manager, telegram_id=OUTSIDER, language="en")
    other_rep = await add_user(session, name="Other rep", manager_id=other_boss.id)
    big = await create_customer(session, name="大客户", owner_id=rep.id)
    small = await create_customer(session, name="小客户", owner_id=rep.id)
    theirs = await create_customer(session, name="别组客户", owner_id=other_rep.id)
    yesterday = TODAY - timedelta(days=1)
    for customer, amount in ((big, 900_00), (small, 100_00), (theirs, 5_000_00)):
        await record_purchase(session, customer_id=customer.id, purchased_on=yesterday, amount_cents=amount,
                              today=TODAY)
    await record_purchase(session, customer_id=big.id, purchased_on=yesterday.replace(year=yesterday.year - 1)
                          if not (yesterday.month == 2 and yesterday.day == 29) else date(yesterday.year - 1, 2, 28),
                          amount_cents=300_00, today=TODAY)
    complaint = await record_feedback(session, customer_id=small.id, kind="complaint", text="慢", rating=2,
                                      user_id=rep.id)
    await session.execute(update(Feedback).where(Feedback.id == complaint.id)
                          .values(created_at=datetime.now(UTC) - timedelta(days=2)))
    await log_interaction(session, customer_id=big.id, kind="call", user_id=rep.id,
                          occurred_at=datetime.now(UTC) - timedelta(days=2))
    return boss, rep, big, small, theirs


async def test_a_team_report_covers_the_team_only(session):
    boss, rep, big, small, theirs = await _world(session)
    report = await build(session, await viewer_for(session, boss), kind="week", today=TODAY, language="en")
    assert report.period == period_for("week", TODAY) and report.period.end == TODAY - timedelta(days=1)
    assert theirs.id not in report.customers and report.total_cents == 1000_00
    assert [a.customer_id for a in report.key_accounts] == [big.id]  # 900 of 1000 ≥ 80%
    assert report.key_accounts[0].prior_cents == 300_00 and report.key_accounts[0].change == 2.0
    assert report.complaints.open == 1 and report.complaints.by_product == {None: 1}
    assert report.activity.per_rep_week[rep.id] and report.rfm.segments.total() == 2
    assert report.trend[-1][1] >= 1000_00 if report.trend[-1][0] == (TODAY - timedelta(days=1)).strftime("%Y-%m") \
        else True


async def test_the_spreadsheet_has_a_sheet_per_analysis_with_number_formats(session, tmp_path):
    boss, *_ = await _world(session)
    report = await build(session, await viewer_for(session, boss), kind="month", today=TODAY, language="en")
    path = write_xlsx(report, tmp_path / "r.xlsx", xlsx_headings(lambda s: s))
    book = load_workbook(path)
    assert book.sheetnames == ["RFM", "Segments", "Segment movement", "Visit first", "Key accounts", "Distribution",
                               "Sales by customer", "Sales by rep", "Growth and decline", "Complaints",
                               "Team activity", "Contacts per week", "Several reps in a week", "Satisfaction",
                               "Monthly sales"]
    accounts = book["Key accounts"]
    assert [c.value for c in accounts[1]][:4] == ["Rank", "Customer code", "Customer", "Amount"]
    assert (accounts["C2"].value, accounts["D2"].value, accounts["D2"].number_format) == ("大客户", 900.0, "#,##0.00")
    assert accounts["E2"].number_format == "0.0%" and accounts["E2"].value == 0.9


@pytest.fixture
async def app(engine):
    app = await make_app(engine)
    async with app.sessions() as session:
        await _world(session)
        await session.commit()
    await app.sync()
    return app


async def test_report_in_chat_with_charts_details_and_xlsx(app):
    boss = person(BOSS, language="en")
    [ask] = (await app.send(text_update(boss, "/report"))).sent()
    assert [b.text for b in ask.reply_markup.inline_keyboard[0]] == ["week", "month", "quarter", "year"]
    recorder = await app.send(button_update(boss, ReportCallback(period="week").pack()))
    [text] = recorder.sent()
    assert "Report for the last week" in text.text and "Sales: CN¥1,000.00" in text.text
    assert "Key accounts: 1 customers make 80% of sales — 大客户 90%" in text.text and "别组客户" not in text.text
    photos = [r for r in recorder.requests if isinstance(r, SendPhoto)]
    assert len(photos) == 3 and all(p.photo.data[:4] == b"\x89PNG" for p in photos)
    [detail] = (await app.send(button_update(boss, ReportCallback(period="week", show="key_accounts").pack()))).sent()
    assert "1. 大客户 · CN¥900.00 · 90% · +200%" in detail.text
    recorder = await app.send(button_update(boss, ReportCallback(period="month", show="xlsx").pack()))
    [document] = [r for r in recorder.requests if isinstance(r, SendDocument)]
    assert document.document.filename.endswith(".xlsx") and document.document.data[:2] == b"PK"


async def test_one_rep_only_within_the_team(app):
    boss = person(BOSS, language="en")
    [team] = (await app.send(button_update(boss, ReportCallback(period="week", show="reps").pack()))).sent()
    lee = next(b.callback_data for row in team.reply_markup.inline_keyboard for b in row if b.text == "Lee")
    recorder = await app.send(button_update(boss, lee))
    assert "Customers of Lee" in recorder.sent()[0].text
    outsider = person(OUTSIDER, language="en")
    refused = await app.send(button_update(outsider, ReportCallback.unpack(lee).pack()))
    assert refused.answers()[0].show_alert and not refused.sent()
    forged = await app.send(button_update(boss, "rep:decade:summary:0:365"))  # a forged period
    assert forged.answers()[0].show_alert and not forged.sent()


async def test_a_manager_chooses_the_window_rfm_looks_at(app):
    boss = person(BOSS, language="en")
    [rfm] = (await app.send(button_update(boss, ReportCallback(period="week", show="rfm").pack()))).sent()
    assert "purchases of the last 365 days" in rfm.text
    windows = {b.text: b.callback_data for row in rfm.reply_markup.inline_keyboard for b in row if "days" in b.text}
    assert list(windows) == ["90 days", "180 days", "• 365 days", "730 days"]
    [longer] = (await app.send(button_update(boss, windows["730 days"]))).sent()
    assert "purchases of the last 730 days" in longer.text
    # The chosen window stays with the other buttons of that message.
    sales = next(b.callback_data for row in longer.reply_markup.inline_keyboard for b in row if b.text == "Sales")
    assert ReportCallback.unpack(sales).window == 730
    forged = await app.send(button_update(boss, "rep:week:rfm:0:7"))  # a forged window
    assert forged.answers()[0].show_alert and not forged.sent()


async def test_the_rfm_window_decides_which_purchases_count(session):
    from services.access import Viewer
    from services.messages import DomainError

    _boss, _rep, big, small, _theirs = await _world(session)
    short = await build(session, Viewer.everyone(), kind="week", today=TODAY, rfm_days=90)
    long = await build(session, Viewer.everyone(), kind="week", today=TODAY, rfm_days=730)
    assert (short.rfm_window.days, long.rfm_window.days) == (90, 730)
    assert short.rfm.scores[big.id].f == short.rfm.scores[small.id].f  # one purchase each in 90 days
    assert long.rfm.scores[big.id].f > long.rfm.scores[small.id].f  # big also bought a year earlier
    with pytest.raises(DomainError):
        await build(session, Viewer.everyone(), kind="week", today=TODAY, rfm_days=7)


async def test_the_weekly_digest_is_queued_once_a_week_in_working_hours_with_charts(engine, tmp_path):
    from zoneinfo import ZoneInfo

    from sqlalchemy import select

    from bot.db import make_sessionmaker
    from bot.notify import BotPresenter
    from jobs.reminders import Runtime, plan_manager_reports
    from models import OutboxMessage

    sessions = make_sessionmaker(engine)
    async with sessions() as session, session.begin():
        await _world(session)
    runtime = Runtime(sessions, files_dir=tmp_path, present=BotPresenter())
    shanghai = ZoneInfo("Asia/Shanghai")
    monday = TODAY - timedelta(days=TODAY.weekday())
    early = datetime(monday.year, monday.month, monday.day, 7, 0, tzinfo=shanghai).astimezone(UTC)
    assert await plan_manager_reports(runtime, early) == 0  # before working hours
    at_ten = early + timedelta(hours=3)
    assert await plan_manager_reports(runtime, at_ten) == 2  # both managers
    assert await plan_manager_reports(runtime, at_ten + timedelta(hours=2)) == 0  # once a week
    async with sessions() as session:
        rows = list((await session.execute(select(OutboxMessage).where(OutboxMessage.chat_id == BOSS)
                                           .order_by(OutboxMessage.id))).scalars())
    daily_row, weekly, *charts = rows
    assert daily_row.text.startswith("<b>☀️ Yesterday in your team")
    assert weekly.text.startswith("<b>📊 Report for the last week") and weekly.photo is None
    charts = [r.photo for r in charts]
    assert 2 <= len(charts) <= 4 and all(open(p, "rb").read(4) == b"\x89PNG" for p in charts)
    assert await plan_manager_reports(runtime, at_ten + timedelta(days=7)) == 2  # next week again
    # A month later the first week's chart files are cleaned up (long sent by then).
    assert all(os.path.exists(p) for p in charts)
    await plan_manager_reports(runtime, at_ten + timedelta(days=40))
    assert not any(os.path.exists(p) for p in charts)
    async with sessions() as session:
        dailies = (await session.execute(select(OutboxMessage.key).where(
            OutboxMessage.chat_id == BOSS, OutboxMessage.key.like("report:daily:%")))).scalars().all()
    assert len(dailies) == 2  # one per working day it ran on


async def test_the_daily_digest_counts_yesterday_in_the_team(session):
    from bot.report_view import daily_text
    from services.reports import daily

    boss, rep, big, small, theirs = await _world(session)
    viewer = await viewer_for(session, boss)
    two_days_ago = datetime.now(UTC).astimezone(ZoneInfo("Asia/Shanghai")).date() - timedelta(days=2)
    yesterday = await daily(session, viewer, boss.id, TODAY - timedelta(days=1), "UTC")
    assert (yesterday.orders, yesterday.amount_cents) == (2, 1000_00)  # 别组客户's 5,000 is another team's
    before = await daily(session, viewer, boss.id, two_days_ago, "Asia/Shanghai")
    assert before.contacts == 1 and before.new_complaints == [("小客户", "慢")]
    text = daily_text(before, boss, "CNY", _=lambda s: s)
    assert "New complaints: 1" in text and "小客户: 慢" in text


async def test_an_admin_binds_a_team_group_which_then_gets_the_weekly_report(engine, tmp_path):
    from sqlalchemy import select

    from bot.callbacks import TeamChatCallback
    from bot.db import make_sessionmaker
    from bot.notify import BotPresenter
    from jobs.reminders import Runtime, plan_manager_reports
    from models import OutboxMessage, User

    GROUP = -100500
    app = await make_app(engine)
    async with app.sessions() as session:
        boss, rep, *_ = await _world(session)
        await add_user(session, name="Admin", role=Role.admin, telegram_id=9300, language="en")
        await session.commit()
    admin = person(9300, language="en")
    [refused] = (await app.send(text_update(person(BOSS, language="en"), "/bindteam", "group", GROUP))).sent()
    assert "Only an admin" in refused.text
    [ask] = (await app.send(text_update(admin, "/bindteam", "group", GROUP))).sent()
    choice = next(b.callback_data for row in ask.reply_markup.inline_keyboard for b in row if b.text == "Boss")
    assert TeamChatCallback.unpack(choice).manager == boss.id
    # A manager cannot use the admin's button.
    forged = await app.send(button_update(person(BOSS, language="en"), choice, chat_id=GROUP))
    assert forged.answers()[0].show_alert
    await app.send(button_update(admin, choice, chat_id=GROUP))
    async with app.sessions() as session:
        assert (await session.get(User, boss.id)).team_chat_id == GROUP
    monday = TODAY - timedelta(days=TODAY.weekday())
    at_ten = datetime(monday.year, monday.month, monday.day, 10, 0, tzinfo=ZoneInfo("Asia/Shanghai")).astimezone(UTC)
    await plan_manager_reports(Runtime(make_sessionmaker(engine), files_dir=tmp_path, present=BotPresenter()), at_ten)
    async with app.sessions() as session:
        weekly = (await session.execute(select(OutboxMessage.chat_id).where(
            OutboxMessage.key.like(f"report:weekly:{boss.id}:%")))).scalars().all()
        daily = (await session.execute(select(OutboxMessage.chat_id).where(
            OutboxMessage.key.like(f"report:daily:{boss.id}:%")))).scalars().all()
    assert set(weekly) == {GROUP} and len(weekly) >= 3 and daily == [BOSS]  # the daily one stays private
    [done] = (await app.send(text_update(admin, "/unbindteam", "group", GROUP))).sent()
    assert "no longer" in done.text
    async with app.sessions() as session:
        assert (await session.get(User, boss.id)).team_chat_id is None


async def test_an_admin_report_covers_everyone_but_archived_customers(session):
    from services.access import Viewer
    from services.customers import archive_customer

    boss, rep, big, small, theirs = await _world(session)
    everyone = await build(session, Viewer.everyone(), kind="week", today=TODAY, language="en")
    assert everyone.total_cents == 6000_00 and theirs.id in everyone.customers
    await archive_customer(session, theirs.id)
    without = await build(session, Viewer.everyone(), kind="week", today=TODAY, language="en")
    assert without.total_cents == 1000_00 and theirs.id not in without.customers
    assert theirs.id not in without.rfm.scores and sum(a for _m, a, _b in without.trend) == 1000_00


async def test_the_spreadsheet_speaks_the_users_language(session, tmp_path):
    from bot.i18n import gettext_for

    boss, *_ = await _world(session)
    report = await build(session, await viewer_for(session, boss), kind="month", today=TODAY, language="zh_Hans")
    book = load_workbook(write_xlsx(report, tmp_path / "r.xlsx", xlsx_headings(gettext_for("zh_Hans"))))
    rfm = book["RFM 分析"]
    segments = {row[6] for row in rfm.iter_rows(min_row=2, values_only=True)}
    assert segments and all(re.search(r"[\u4e00-\u9fff]", s) for s in segments), segments
    kinds = [row[1] for row in book["投诉"].iter_rows(min_row=2, values_only=True) if row[0] == "类型"]
    assert kinds == ["投诉"]


async def test_the_workbook_has_every_table_the_readme_promises(session, tmp_path):
    """Segment counts and movement, top growth and decline, the oldest open complaint, contacts per week,
    customers contacted by several reps in one week, and monthly sales that follow the period."""
    from bot.i18n import gettext_for

    boss, rep, big, small, theirs = await _world(session)
    second = await add_user(session, name="Kim", telegram_id=9103, manager_id=boss.id, language="en")
    when = datetime.now(UTC) - timedelta(days=3)
    await log_interaction(session, customer_id=big.id, kind="visit", user_id=second.id, occurred_at=when)
    await log_interaction(session, customer_id=big.id, kind="call", user_id=rep.id, occurred_at=when)
    report = await build(session, await viewer_for(session, boss), kind="month", today=TODAY, language="en")
    book = load_workbook(write_xlsx(report, tmp_path / "r.xlsx", xlsx_headings(gettext_for("en"))))
    rows = lambda title: [list(r) for r in book[title].iter_rows(values_only=True)]  # noqa: E731

    segments = rows("Segments")
    assert segments[0] == ["Segment", "Customers", "Customers before", "Change"]
    assert sum(r[1] for r in segments[1:]) == len(report.rfm.scores) == 2
    assert all(r[3] == r[1] - r[2] for r in segments[1:])
    movement = rows("Segment movement")
    assert movement[0] == ["Segment before", "Segment", "Customers"]
    # The company's three buyers all bought once, yesterday: R and F tie (3 each), so big and small are
    # "potential" now. A period ago only big had bought (a year earlier): small moved in from "no purchase".
    assert movement[1:] == [["no purchase", "potential", 1]]

    extremes = rows("Growth and decline")
    groups = {r[0] for r in extremes[1:]}
    assert {"Top total", "Top growth"} <= groups
    top_growth = [r for r in extremes[1:] if r[0] == "Top growth"]
    assert top_growth[0][2] == "大客户" and top_growth[0][5] == 600.0  # 900 now, 300 a year earlier

    complaints = rows("Complaints")
    oldest = [r for r in complaints if r[0] == "Oldest open"]
    assert oldest and oldest[0][1] == "小客户"
    assert [r for r in complaints if r[0] == "Open up to the period's end"][0][2] == 1

    weekly = rows("Contacts per week")
    assert weekly[0] == ["Week", "Rep", "Contacts"]
    assert sum(r[2] for r in weekly[1:]) == 3 and {r[1] for r in weekly[1:]} == {"Lee", "Kim"}
    crowded = rows("Several reps in a week")
    assert [r[2:] for r in crowded[1:]] == [["大客户", "Kim、Lee"]]

    months = rows("Monthly sales")
    assert months[0] == ["Month", "From", "To", "Amount", "A year earlier", "Note"]
    assert months[1][1] == report.period.start.isoformat() and months[-1][2] == report.period.end.isoformat()
    assert sum(r[3] for r in months[1:]) == report.total_cents / 100  # the months add up to the period
    assert months[1][5] == ("part of the month" if report.period.start.day != 1 else "")


async def test_a_table_longer_than_a_sheet_continues_on_the_next_with_a_note(session, tmp_path):
    from bot.i18n import gettext_for
    from services.workbook import write

    boss, *_ = await _world(session)
    report = await build(session, await viewer_for(session, boss), kind="month", today=TODAY, language="en")
    report.rfm.scores.update({1000 + n: report.rfm.scores[next(iter(report.rfm.scores))] for n in range(9)})
    path = write(report, tmp_path / "r.xlsx", xlsx_headings(gettext_for("en")), row_limit=5)
    book = load_workbook(path)
    parts = [name for name in book.sheetnames if name.startswith("RFM")]
    rows = [[c for c in row] for name in parts for row in book[name].iter_rows(values_only=True)]
    assert parts == ["RFM", "RFM (2)", "RFM (3)", "RFM (4)"]  # 3 rows a sheet (header, 3, note) for 11 rows
    assert rows[4][0] == "continued on RFM (2)" and book["RFM (2)"]["A1"].value == "Customer code"
    data = [row for name in parts for row in book[name].iter_rows(min_row=2, values_only=True)
            if not str(row[0] or "").startswith("continued")]
    assert len(data) == len(report.rfm.scores)  # every row once


def test_the_workbook_command_imports_neither_the_bot_framework_nor_the_charts():
    import subprocess
    import sys

    code = ("import sys; import bot.cli, bot.report_words, services.workbook, services.reports; "
            "print(sorted(m for m in ('aiogram', 'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stderr[-2000:]


def test_the_workbook_writer_takes_what_a_spreadsheet_cannot_hold_without_breaking_the_file(tmp_path):
    """Values and titles Excel forbids or XML cannot hold: the file still opens, nothing is lost silently."""
    import math
    from datetime import date as day
    from decimal import Decimal

    from services.xlsxstream import Book

    path = tmp_path / "odd.xlsx"
    book = Book(path)
    book.sheet('Sales "Q4" ok', ["a", "b"], [[math.nan, math.inf, Decimal("1.5"), day(2026, 1, 2), True, 10**20,
                                             "\ud800x", 'say "hi" & <bye>', "\x01ctl"]],
               [8, 8], {0: book.style('#,##0.00"元"')}, True)
    book.close()
    sheet = load_workbook(path).active
    assert sheet.title == 'Sales "Q4" ok'
    assert [c.value for c in sheet[2]] == ["nan", "inf", "1.5", "2026-01-02", True, 10**20, "?x", 'say "hi" & <bye>',
                                           "ctl"]


async def test_a_teams_sales_per_month_are_its_own_customers_orders_of_those_days(session):
    """A team's report sums its months in one pass over the team's sales per day: each month (cut to the
    period) and the same days a year earlier hold exactly the team's orders of those days — not another
    team's, not a voided one — as counted order by order here."""
    import random

    from models import Purchase
    from services.analytics import Period
    from services.purchases import void_purchase

    boss, rep, big, small, theirs = await _world(session)
    rng = random.Random(11)
    for _ in range(120):
        await record_purchase(session, customer_id=rng.choice([big.id, small.id, theirs.id]),
                              purchased_on=TODAY - timedelta(days=rng.randint(1, 760)),
                              amount_cents=rng.randint(1, 500) * 100, today=TODAY)
    orders = (await session.execute(select(Purchase))).scalars().all()
    for order in orders[:10]:
        await void_purchase(session, order.id, user_id=rep.id)
    await session.commit()
    mine = {big.id, small.id}
    live = [(o.customer_id, o.purchased_on, o.amount_cents) for o in (await session.execute(select(Purchase)))
            .scalars() if o.voided_at is None]

    def counted(part) -> int:
        return sum(cents for customer, day, cents in live if customer in mine and part.start <= day <= part.end)
    for kind in ("year", "quarter", "week"):
        report = await build(session, await viewer_for(session, boss), kind=kind, today=TODAY, language="en")
        assert [(m.amount_cents, m.year_before_cents) for m in report.months] == \
            [(counted(m.part), counted(m.part.year_before())) for m in report.months], kind
        assert sum(m.amount_cents for m in report.months) == report.total_cents
        end = report.period.end  # the trend: calendar months up to the period's end, a year earlier up to that day
        same_day = Period(end, end).year_before().end
        for label, amount, year_before in report.trend:
            first = date(int(label[:4]), int(label[5:]), 1)
            last = (first.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)
            earlier = first.replace(year=first.year - 1)
            earlier_last = (earlier.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)
            assert (amount, year_before) == (counted(Period(first, min(last, end))),
                                             counted(Period(earlier, min(earlier_last, same_day)))), (kind, label)
