"""Issue 18: long work never holds the bot's loop. A manager's report and the scheduled jobs (scan, digests,
managers' reports, RFM) run in the bot's worker process (bot.background) with its own database engine; a
rep's lookup typed meanwhile is answered at once.

The long work is made long on purpose with seconds of busy Python inside it (`tests.in_worker.busy`) — exactly what a
report over 100k customers does: had it run on the bot's loop, nothing else would run; in a thread of the
bot's process it would share the interpreter with the bot. The slow stand-ins are in tests/in_worker.py,
which the worker process imports to run them (this module would cost it seconds of imports)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy import update as sa_update

from bot.background import Background, close_all, for_sessions, worker_pid
from bot.callbacks import ReportCallback
from bot.db import make_sessionmaker
from jobs import reminders as jobs
from models import Customer, PurchaseStrategy, Reminder, Role
from services.customers import create_customer
from services.purchases import record_purchase
from services.users import add_user
from tests.botkit import button_update, make_app, person, text_update
from tests.in_worker import (
    SLOW,
    STORE_DELAY,
    aiogram_loaded,
    counting,
    failing,
    noting_pid,
    sleeping,
    slow_report_detail,
    slow_scan,
    slowly_stored_report,
)

BOSS, REP = 9300, 9301


async def _team(app) -> None:
    today = datetime.now(UTC).date()
    async with app.sessions() as session, session.begin():
        boss = await add_user(session, name="Boss", role=Role.manager, telegram_id=BOSS, language="en")
        rep = await add_user(session, name="Lee", telegram_id=REP, manager_id=boss.id, language="en")
        buy30 = PurchaseStrategy(code="p30", cycle_days=30, label_zh_hans="30天", label_zh_hant="30天",
                                 label_en="30 days")
        session.add(buy30)
        await session.flush()
        for name in ("恒达贸易", "远东机电", "华南五金"):
            customer = await create_customer(session, name=name, owner_id=rep.id, purchase_strategy_id=buy30.id)
            await record_purchase(session, customer_id=customer.id, purchased_on=today - timedelta(days=90),
                                  amount_cents=1000_00, today=today)
    await app.sync()


async def test_a_lookup_is_answered_while_a_year_report_is_being_built(engine, monkeypatch, tmp_path):
    """The report's tap ends its update at once (long polling confirms updates in order and hands out 100
    past the oldest unfinished one: a 20 s workbook held every rep's next message back — the load bench saw
    16 s without a reply); the report is built in the worker process and follows when ready."""
    import handlers.report as report_handlers
    from bot.detached import settle

    app = await make_app(engine)
    await _team(app)
    pid_file = tmp_path / "built-by"
    monkeypatch.setattr(report_handlers, "report_detail", functools.partial(slow_report_detail, str(pid_file)))
    boss, rep = person(BOSS, language="en"), person(REP, language="en")
    began = time.perf_counter()
    await app.dispatcher.feed_update(app.bot, button_update(boss, ReportCallback(period="year",
                                                                                 show="key_accounts").pack()))
    assert time.perf_counter() - began < SLOW / 3, "the tap's update waited for the report"
    while not pid_file.exists():  # the report is under way (the worker process starts at its first use)
        await asyncio.sleep(0.05)
    began = time.perf_counter()
    await app.dispatcher.feed_update(app.bot, text_update(rep, "恒达"))
    waited = time.perf_counter() - began
    texts = [m.text for m in app.recorder.sent()]
    assert not any("key account" in t.lower() for t in texts), "the report should still be building"
    assert waited < SLOW / 3, f"the lookup waited {waited:.2f} s for the report"
    await settle()
    assert int(pid_file.read_text()) not in (os.getpid(), None)  # built in the worker process
    texts = [m.text for m in app.recorder.sent()]
    assert any("恒达贸易" in t for t in texts)  # the lookup's card
    assert any("Key accounts" in t or "key account" in t.lower() for t in texts)  # the report arrived


async def test_a_report_that_fails_tells_the_manager_in_their_language(engine, monkeypatch):
    import handlers.report as report_handlers

    app = await make_app(engine)
    await _team(app)
    monkeypatch.setattr(report_handlers, "report_detail", failing)
    recorder = await app.send(button_update(person(BOSS, language="en"),
                                            ReportCallback(period="year", show="key_accounts").pack()))
    assert [m.text for m in recorder.sent()] == ["Sorry, that did not work. Please try again in a moment."]


async def test_the_summary_charts_and_the_workbook_are_made_in_the_worker_process(engine, monkeypatch, tmp_path):
    from aiogram.methods import SendDocument, SendPhoto

    import handlers.report as report_handlers

    app = await make_app(engine)
    await _team(app)
    boss = person(BOSS, language="en")
    for real, show, sent in (("report_summary", "summary", SendPhoto), ("report_workbook", "xlsx", SendDocument)):
        pid_file = tmp_path / real
        monkeypatch.setattr(report_handlers, real, functools.partial(noting_pid, real, str(pid_file)))
        recorder = await app.send(button_update(boss, ReportCallback(period="month", show=show).pack()))
        assert any(isinstance(r, sent) for r in recorder.requests), show
        assert int(pid_file.read_text()) != os.getpid()


async def test_a_scheduled_scan_runs_beside_the_bot_and_writes_what_it_would_write_inline(engine):
    import services.reminders as rules

    app = await make_app(engine)
    await _team(app)
    runtime = jobs.Runtime(app.sessions, background=for_sessions(app.sessions))
    async with app.sessions() as session:  # what an inline scan would create
        expected = len(await rules.compute_due(session, runtime.now(), rules=runtime.rules))
    assert expected >= 3  # each customer: no purchase in 90 days on a 30-day cycle
    lags: list[float] = []

    async def ticking() -> None:  # how late the bot's loop wakes up while the scan runs
        while True:
            began = time.perf_counter()
            await asyncio.sleep(0.02)
            lags.append(time.perf_counter() - began - 0.02)

    ticker = asyncio.create_task(ticking())
    pid, new = await jobs.apart(runtime, slow_scan)
    ticker.cancel()
    assert pid != os.getpid() and pid == worker_pid()
    assert new == expected
    async with app.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Reminder)) >= expected
    assert runtime.answered is not None  # the sweep's watermark came back to the runtime
    assert max(lags) < 0.3, f"the loop stalled {max(lags):.2f} s"
    assert (await jobs.apart(runtime, slow_scan))[1] == 0  # keyed: a second run writes nothing new


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # about the worker process, not the database
async def test_a_new_worker_runs_a_job_without_loading_the_bot_framework_and_the_presenter_still_words(engine):
    """The runtime a job takes to the worker carries the bot's presenter. Unpickling the presenter itself
    imported aiogram there: 4.6 s before a new worker's first job (a scan after a start, the RFM scores), which
    most jobs never use. Now the framework comes in only when a job words a message, and that still works."""
    import pickle

    from bot.runner import jobs_runtime
    from models import User

    app = await make_app(engine)
    await close_all(stop_worker=True)  # a new worker, as after a start
    runtime = jobs_runtime(app.sessions, app.dispatcher["settings"])
    assert await jobs.apart(runtime, jobs.scan) == 0  # nothing to remind of: nothing worded
    assert await jobs.apart(runtime, aiogram_loaded) is False
    assert worker_pid() is not None and worker_pid() != os.getpid()
    present = pickle.loads(pickle.dumps(runtime.present))  # what a job in the worker words with
    assert present.agenda([], User(name="Ada", language="en"), datetime.now(UTC).date()) == ("Nothing due today. 🎉", None)


async def test_a_report_is_replied_before_it_is_stored_and_stored_while_the_worker_waits(engine):
    """A manager's /report comes back as soon as it is made; storing it for the next request (seconds at 1M
    customers) goes on in the worker afterwards — its loop keeps running between pieces of work, so the
    report is stored even though no other work comes (before, that loop ran only during a piece of work:
    what a piece of work left to do waited for the next one)."""
    from models import ReportSnapshot
    from services.access import Viewer

    app = await make_app(engine)
    await _team(app)
    place = Background(app.sessions)
    options = dict(viewer=Viewer.everyone(), kind="month", today=datetime.now(UTC).date(), language="en",
                   timezone="UTC", currency="CNY")
    began = time.monotonic()
    text, charts = await place.run(functools.partial(slowly_stored_report, **options))
    replied = time.monotonic() - began
    assert "恒达贸易" in text or charts
    async with app.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(ReportSnapshot)) == 0  # not stored yet
    deadline = time.monotonic() + 30
    while True:  # no more work goes to the worker
        async with app.sessions() as session:
            if await session.scalar(select(func.count()).select_from(ReportSnapshot)):
                break
        assert time.monotonic() < deadline, "the report was never stored"
        await asyncio.sleep(0.1)
    stored_after = time.monotonic() - began
    assert stored_after >= STORE_DELAY and replied < stored_after
    await place.close()


async def test_an_error_in_the_worker_reaches_the_caller_and_the_worker_goes_on(engine):
    place = Background(make_sessionmaker(engine))
    try:
        await place.run(failing)
    except ValueError as exc:
        assert str(exc) == "bad"
    else:
        raise AssertionError("the error was swallowed")
    assert await place.run(counting) == 0
    await place.close()


async def test_a_shutdown_ends_the_worker_even_in_the_middle_of_work(engine):
    place = Background(make_sessionmaker(engine))
    assert await place.run(counting) == 0
    waiting = asyncio.create_task(place.run(sleeping))
    await asyncio.sleep(0.3)
    pid = worker_pid()
    began = time.monotonic()
    await close_all(stop_worker=True)
    assert time.monotonic() - began < 10 and worker_pid() is None
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, 0)
        raise AssertionError("the worker process is still alive")
    await asyncio.gather(waiting, return_exceptions=True)
    assert await place.run(counting) == 0  # the next piece of work starts a new worker
    await place.close()


def _write_lock_free(path: str) -> bool:
    """Whether another connection could start writing this SQLite file right now (nobody holds its lock)."""
    import sqlite3

    with contextlib.closing(sqlite3.connect(path, timeout=0, isolation_level=None)) as other:
        try:
            other.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError:
            return False
        other.execute("ROLLBACK")
        return True


class _Watching:
    """The bot's presenter, noting at each message it words whether SQLite's write lock was free then."""

    def __init__(self, path: str) -> None:
        from bot.notify import BotPresenter

        self.inner, self.path, self.seen = BotPresenter(), path, []

    def __getattr__(self, name):
        method = getattr(self.inner, name)

        def watched(*args, **kwargs):
            self.seen.append((name, _write_lock_free(self.path)))
            return method(*args, **kwargs)
        return watched


async def test_digests_and_weekly_reports_are_composed_while_nobody_holds_the_write_lock(engine, tmp_path):
    """Issue 18: the digests (an agenda of 1,400 lines per rep at 100k customers) and the managers' weekly
    report with its charts were composed inside the transaction that queued them, holding SQLite's write
    lock for seconds — every rep's update waited for it. Now each is composed first and queued after."""
    from zoneinfo import ZoneInfo

    from models import ContactStrategy, OutboxMessage

    if engine.url.get_backend_name() != "sqlite":
        return  # the write lock in question is SQLite's; PostgreSQL writes rows, not the file
    sessions = make_sessionmaker(engine)
    async with sessions() as session, session.begin():
        weekly = ContactStrategy(code="w7", cycle_days=7, label_zh_hans="每周", label_zh_hant="每週", label_en="weekly")
        session.add(weekly)
        await session.flush()
        boss = await add_user(session, name="Boss", role=Role.manager, telegram_id=BOSS, language="en")
        rep = await add_user(session, name="Lee", telegram_id=REP, manager_id=boss.id, language="en")
        for name in ("恒达贸易", "远东机电"):
            customer = await create_customer(session, name=name, owner_id=rep.id, contact_strategy_id=weekly.id)
            await session.execute(sa_update(Customer).where(Customer.id == customer.id)
                                  .values(created_at=datetime(2026, 1, 1, tzinfo=UTC)))
    watching = _Watching(engine.url.database)
    runtime = jobs.Runtime(sessions, files_dir=tmp_path, present=watching)
    monday_ten = datetime(2026, 3, 9, 10, tzinfo=ZoneInfo("Asia/Shanghai")).astimezone(UTC)
    digests = await jobs.plan_digests(runtime, monday_ten)
    assert digests >= 1
    assert await jobs.plan_manager_reports(runtime, monday_ten) == 1
    assert {name for name, _ in watching.seen} >= {"agenda", "daily", "weekly"}
    # (an escalation notice is worded inside its scan batch's short transaction, on purpose: see jobs.scan)
    assert all(free for name, free in watching.seen if name != "escalation"), watching.seen
    async with sessions() as session:
        kinds = sorted((await session.execute(select(OutboxMessage.kind))).scalars())
    assert kinds.count("digest") == digests and kinds.count("report") >= 2  # queued all the same


async def test_the_scheduled_rfm_scoring_writes_in_short_transactions_with_the_same_scores(engine):
    from sqlalchemy import event

    from services.rfm import score_all

    app = await make_app(engine)
    today = datetime.now(UTC).date()
    async with app.sessions() as session, session.begin():
        rep = await add_user(session, name="Lee", telegram_id=REP, language="en")
        for n in range(9):
            customer = await create_customer(session, name=f"客户{n}", owner_id=rep.id)
            for k in range(n % 3 + 1):
                await record_purchase(session, customer_id=customer.id, purchased_on=today - timedelta(days=5 + n + k),
                                      amount_cents=(n + 1) * 100_00, today=today)
    async with app.sessions() as session, session.begin():
        assert await score_all(session, today) == 9  # one transaction (the CLI's way)
        single = sorted((await session.execute(select(Customer.id, Customer.rfm_r, Customer.rfm_f, Customer.rfm_m,
                                                      Customer.rfm_segment))).all())
        await session.execute(sa_update(Customer).values(rfm_r=None, rfm_f=None, rfm_m=None, rfm_segment=None,
                                                         rfm_scored_on=None))
    commits: list[int] = []

    def counted(connection) -> None:
        commits.append(1)

    event.listen(engine.sync_engine, "commit", counted)
    try:
        async with app.sessions() as session:  # as the scheduler runs it (jobs.reminders.score_rfm)
            assert await score_all(session, today, batch=2, commit_each=True) == 9
    finally:
        event.remove(engine.sync_engine, "commit", counted)
    assert len(commits) >= 5  # 9 customers in batches of 2, each its own transaction
    async with app.sessions() as session:
        batched = sorted((await session.execute(select(Customer.id, Customer.rfm_r, Customer.rfm_f, Customer.rfm_m,
                                                       Customer.rfm_segment))).all())
    assert batched == single and all(row[1] for row in batched)


async def test_a_worker_killed_by_the_system_is_replaced_and_the_work_done(engine):
    """The worker process killed from outside (out of memory, an operator's kill -9): the next piece of
    work starts a new worker instead of failing for ever."""
    import signal

    place = Background(make_sessionmaker(engine))
    assert await place.run(counting) == 0
    first = worker_pid()
    os.kill(first, signal.SIGKILL)
    await asyncio.sleep(0.5)
    assert await place.run(counting) == 0
    assert worker_pid() not in (None, first)
    await place.close()


async def test_the_worker_runs_at_a_lower_priority_than_the_bot(engine):
    """A person waits for a reply; nobody waits to the second for a scan: when both want the processor,
    the system prefers the bot's process."""
    from bot.background import WORKER_NICENESS

    place = Background(make_sessionmaker(engine))
    assert await place.run(counting) == 0
    assert os.getpriority(os.PRIO_PROCESS, worker_pid()) >= os.getpriority(os.PRIO_PROCESS, 0) + WORKER_NICENESS \
        or os.getpriority(os.PRIO_PROCESS, worker_pid()) == 19
    await place.close()


def test_the_worker_ends_when_the_bots_process_is_killed_outright(tmp_path):
    """kill -9 of the bot (or the OOM killer) cannot stop its worker, and the pool's queue never tells the
    worker: each killed bot used to leave its worker running for ever (found after tests/test_kill.py)."""
    import signal
    import subprocess
    import sys

    from bot.db import make_engine, upgrade

    db_url = f"sqlite+aiosqlite:///{tmp_path / 'crm.sqlite3'}"

    async def migrated() -> None:
        engine = make_engine(db_url)
        await upgrade(engine)
        await engine.dispose()

    asyncio.run(migrated())
    script = tmp_path / "bot_like.py"
    script.write_text(
        "import asyncio, sys, time\n"
        "from bot.background import Background, worker_pid\n"
        "from bot.db import make_engine, make_sessionmaker\n"
        "from tests.in_worker import counting\n"
        "async def main():\n"
        f"    place = Background(make_sessionmaker(make_engine({db_url!r})))\n"
        "    await place.run(counting)\n"
        "    print(worker_pid(), flush=True)\n"
        "    time.sleep(120)\n"
        "if __name__ == '__main__':\n"
        "    asyncio.run(main())\n")
    root = Path(__file__).resolve().parent.parent
    bot = subprocess.Popen([sys.executable, str(script)], cwd=root, stdout=subprocess.PIPE, text=True,
                           env={**os.environ, "PYTHONPATH": str(root)})
    try:
        worker = int(bot.stdout.readline() or 0)
        assert worker, "the bot-like process did not start its worker"
        os.kill(bot.pid, signal.SIGKILL)
        bot.wait(10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and _alive(worker):
            time.sleep(0.2)
        assert not _alive(worker)
    finally:
        if bot.poll() is None:
            bot.kill()
        bot.stdout.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with contextlib.suppress(OSError):  # a finished child not yet reaped by anyone counts as gone
        if Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z"):
            return False
    return True
