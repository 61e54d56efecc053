"""The command line: `python main.py COMMAND ...`. Parses arguments, opens one transaction per command,
calls services, prints localized results. Exits non-zero with a clear message on bad input."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import date, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from bot.i18n import LANGUAGES, gettext_for
from bot.settings import ROOT, Settings, get_settings

_ = gettext_for("en")  # replaced by the chosen language in main()


class CliError(Exception):
    """Bad input on the command line: printed, exit code 2."""


def _progress_printer(label: Callable[[str], str]) -> Callable[[str, int, int | None], None]:
    tty = sys.stderr.isatty()
    state = {"last": 0.0}

    def show(stage: str, done: int, total: int | None) -> None:
        now = time.monotonic()
        finished = total is not None and done >= total
        if not finished and now - state["last"] < (0.2 if tty else 5):
            return
        state["last"] = now
        text = label(stage)
        line = f"{text}: {done:,}" + (f" / {total:,} ({done * 100 // max(total, 1)}%)" if total else "")
        print(("\r" + line) if tty else line, end="\n" if finished or not tty else "", file=sys.stderr, flush=True)

    return show


async def _with_session(settings: Settings, work: Callable[[Any], Awaitable[Any]], *, migrate: bool = True) -> Any:
    from bot.db import make_engine, make_sessionmaker, upgrade

    engine = make_engine(settings.effective_database_url)
    try:
        if migrate:
            await upgrade(engine)
        async with make_sessionmaker(engine)() as session:
            async with session.begin():
                return await work(session)
    finally:
        await engine.dispose()


def _domain_message(exc: Exception) -> str:
    from services.messages import DomainError

    if isinstance(exc, DomainError):
        return exc.problem.render(_)
    return str(exc)


# --------------------------------------------------------------------------- commands


async def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    from bot.db import make_engine, make_sessionmaker, schema_status, upgrade

    role = getattr(args, "role", None) or "all"
    if role in ("bot", "worker") and settings.bot_token is None:
        raise CliError(_("--role {role} talks to Telegram: set BOT_TOKEN (the sandbox runs only with --role all)")
                       .format(role=role))
    engine = make_engine(settings.effective_database_url)
    try:
        if role in ("all", "worker"):  # migrations run once, by the process that runs the scheduler
            await upgrade(engine)
        else:
            while (status := await schema_status(engine))[0] != status[1]:
                print(_("Waiting for the worker to bring the database schema up to date ({current} → {head})")
                      .format(current=status[0] or "-", head=status[1]), flush=True)
                await asyncio.sleep(5)
        print(_("Database ready: {url}").format(url=_safe_url(settings.effective_database_url)))
        from bot.logs import configure

        configure(settings.log_level, settings.log_format)
        if settings.bot_token is None and role == "all":
            from bot.sandbox.run import RealData
            from bot.sandbox.run import run as run_sandbox

            print(_("No BOT_TOKEN is set: starting the offline sandbox (a local Telegram stand-in and a chat page on "
                    "demo data). Set BOT_TOKEN in .env to connect to Telegram."), flush=True)
            try:
                await run_sandbox(settings, make_sessionmaker(engine), announce=lambda url: print(
                    _("Sandbox ready: open {url} in a browser. Stop with Ctrl+C.").format(url=url), flush=True))
            except RealData:
                raise CliError(_("This database holds real customers, so the sandbox will not use it. Set BOT_TOKEN "
                                 "to run the bot, or point DATA_DIR (or DATABASE_URL) at an empty database for the "
                                 "sandbox.")) from None
            return 0
        from bot.runner import start

        if role == "api":
            print(_("Starting the HTTP app (ERP API) on {host}:{port}. Stop with Ctrl+C.").format(
                host=settings.http_host, port=settings.http_port), flush=True)
        elif role == "worker":
            print(_("Starting the worker (scheduler and outbox sender). Stop with Ctrl+C."), flush=True)
        else:
            print(_("Starting the bot (webhook at {url}). Stop with Ctrl+C.").format(url=settings.webhook_url)
                  if settings.webhook_url else _("Starting the bot (long polling). Stop with Ctrl+C."), flush=True)
        await start(settings, make_sessionmaker(engine), role=role)
        return 0
    finally:
        await engine.dispose()


async def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    from bot.db import make_engine, schema_status, upgrade

    engine = make_engine(settings.effective_database_url)
    try:
        await upgrade(engine)
        current, head = await schema_status(engine)
    finally:
        await engine.dispose()
    print(_("Database {url} is at schema revision {revision}.").format(
        url=_safe_url(settings.effective_database_url), revision=current))
    return 0


async def cmd_demo_data(args: argparse.Namespace, settings: Settings) -> int:
    from services import demo

    if args.customers < 1:
        raise CliError(_("--customers must be at least 1"))
    today = _parse_day(args.today) if args.today else None
    show = _progress_printer(lambda _stage: _("Creating demo customers"))

    async def work(session):
        return await demo.generate(session, customers=args.customers, seed=args.seed, today=today,
                                   progress=lambda done, total: show("demo", done, total))

    summary = await _with_session(settings, work)
    print(_("Demo data added: {customers} customers, {contacts} contacts, {purchases} purchases, "
            "{interactions} interactions, {feedback} feedback, {users} users.").format(**vars(summary)))
    return 0


async def cmd_import(args: argparse.Namespace, settings: Settings) -> int:
    from services.importer import FileProblem, import_file

    show = _progress_printer(lambda stage: _("Checking rows") if stage == "checking" else _("Importing rows"))

    class Rejected(Exception):
        pass

    async def work(session):
        timezone = args.timezone or settings.default_timezone
        report = await import_file(session, args.kind, args.file, timezone=timezone,
                                   progress=show, dry_run=args.dry_run, encoding=args.encoding,
                                   sheet=args.sheet, date_order=args.date_order, today=_today(args, timezone))
        if not report.ok:
            await session.rollback()
            raise Rejected(report)
        return report

    try:
        report = await _with_session(settings, work)
    except FileProblem as exc:
        print(_("Cannot import {file}: {reason}").format(file=args.file, reason=_domain_message(exc)), file=sys.stderr)
        return 2
    except Rejected as rejected:
        report = rejected.args[0]
        _print_how_read(report)
        _print_errors(report)
        return 1
    _print_how_read(report)
    if report.ignored_columns:
        print(_("Ignored columns (not fields I know): {columns}").format(columns=", ".join(report.ignored_columns)),
              file=sys.stderr)
    if args.dry_run:
        print(_("{rows} rows checked, no problems found. Nothing was changed (dry run).").format(rows=report.rows))
    else:
        print(_("Imported {rows} rows: {created} created, {updated} updated, {unchanged} already present.").format(
            rows=report.rows, created=report.created, updated=report.updated, unchanged=report.unchanged))
    return 0


def _print_how_read(report: Any) -> None:
    if report.encoding:
        print(_("Read as {encoding} text.").format(encoding=report.encoding), file=sys.stderr)
    if report.sheet:
        print(_("Read the sheet “{sheet}”.").format(sheet=report.sheet), file=sys.stderr)
    if report.summary_rows:
        print(_("Skipped totals rows (合计 / Total): {rows}").format(
            rows=", ".join(map(str, report.summary_rows[:20]))), file=sys.stderr)


def _print_errors(report: Any) -> None:
    print(_("The file was not imported: {count} problems found. Nothing was changed.").format(
        count=report.error_count), file=sys.stderr)
    print("\t".join([_("row"), _("column"), _("value"), _("problem")]), file=sys.stderr)
    for error in report.errors:
        print(f"{error.row}\t{error.column}\t{error.value}\t{error.problem.render(_)}", file=sys.stderr)
    if report.error_count > len(report.errors):
        print(_("… and {more} more problems.").format(more=report.error_count - len(report.errors)), file=sys.stderr)


async def cmd_export(args: argparse.Namespace, settings: Settings) -> int:
    from services.exporter import export

    if args.kind == "report":
        return await _export_report(args, settings)
    args.format = args.format or "csv"
    output = Path(args.output) if args.output else \
        settings.data_dir / "exports" / f"{args.kind}-{date.today():%Y%m%d}.{args.format}"

    async def work(session):
        return await export(session, args.kind, output, fmt=args.format, language=args.lang,
                            timezone=args.timezone or settings.default_timezone,
                            include_archived=args.include_archived)

    count = await _with_session(settings, work)
    print(_("Exported {count} rows to {path}").format(count=count, path=output))
    return 0


async def _export_report(args: argparse.Namespace, settings: Settings) -> int:
    """`export report`: the analyses /report sends, as the same XLSX (all customers, or one manager's team)."""
    from zoneinfo import ZoneInfo

    from bot.i18n import gettext_for
    from bot.report_words import xlsx_about, xlsx_headings
    from services.access import Viewer, viewer_for
    from services.reports import build, write_xlsx
    from services.users import find_user

    if args.format not in (None, "xlsx"):
        raise CliError(_("a report is exported as xlsx: add --format xlsx"))
    timezone = args.timezone or settings.default_timezone
    today = _today(args, timezone)
    scope = None

    async def work(session):
        nonlocal scope
        viewer = Viewer.everyone()
        if args.user:
            leader = await find_user(session, args.user)
            viewer = await viewer_for(session, leader)
            scope = _("the team of {name}").format(name=leader.name)
        return await build(session, viewer, kind=args.period, today=today, language=args.lang, timezone=timezone,
                           rfm_days=args.rfm_days)

    report = await _with_session(settings, work)
    output = Path(args.output) if args.output else settings.data_dir / "exports" / \
        f"report-{args.period}-{report.period.end:%Y%m%d}.xlsx"
    text = gettext_for(args.lang)
    write_xlsx(report, output, xlsx_headings(text) | {"about": xlsx_about(
        report, text, args.lang, scope=scope, by=text("command line (export report)"),
        generated=datetime.now(ZoneInfo(timezone)))})
    print(_("Report for {start} – {end} written to {path}").format(start=report.period.start, end=report.period.end,
                                                                  path=output))
    return 0


async def cmd_user(args: argparse.Namespace, settings: Settings) -> int:
    from services import users

    async def work(session):
        if args.action == "add":
            manager_id = (await users.find_user(session, args.manager)).id if args.manager else None
            user = await users.add_user(session, name=args.name, role=args.role, telegram_id=args.telegram_id,
                                        manager_id=manager_id, language=args.language or settings.default_language,
                                        timezone=args.timezone or settings.default_timezone, actor="cli")
            return _("Added {role} {name} (id {id}).").format(role=user.role, name=user.name, id=user.id)
        if args.action == "list":
            from sqlalchemy import select

            from models import User
            rows = (await session.execute(select(User).order_by(User.id))).scalars()
            active, disabled = _("active"), _("disabled")
            return "\n".join("\t".join([str(u.id), str(u.telegram_id or "-"), u.role, u.name,
                                         active if u.active else disabled]) for u in rows)
        user = await users.find_user(session, args.user)
        if args.action == "role":
            await users.set_role(session, user.id, args.role, actor="cli")
            return _("{name} is now {role}.").format(name=user.name, role=args.role)
        await users.set_active(session, user.id, args.action == "enable", actor="cli")
        return (_("{name} is enabled.") if args.action == "enable" else _("{name} is disabled.")).format(name=user.name)

    print(await _with_session(settings, work))
    return 0


async def cmd_token(args: argparse.Namespace, settings: Settings) -> int:
    """`token create|list|revoke`: the ERP API's keys (services.tokens); a new token is printed once."""
    from services import tokens

    async def work(session):
        if args.action == "create":
            user_id = None
            if args.user:
                from services.users import find_user

                user_id = (await find_user(session, args.user)).id
            row, token = await tokens.create_token(session, settings.api_key(), args.name, scope=args.scope,
                                                   user_id=user_id)
            return "\n".join([_("Token “{name}” ({scope}) made. It is shown only now; keep it in the ERP's "
                                 "settings:").format(name=row.name, scope=row.scope), token])
        if args.action == "list":
            rows = await tokens.list_tokens(session)
            if not rows:
                return _("No tokens yet: python main.py token create NAME --scope write")
            never, live = _("never"), _("active")
            return "\n".join("\t".join([row.name, row.scope, row.created_at.strftime("%Y-%m-%d"),
                                        row.last_used_at.strftime("%Y-%m-%d %H:%M") if row.last_used_at else never,
                                        _("revoked {date}").format(date=row.revoked_at.strftime("%Y-%m-%d"))
                                        if row.revoked_at else live]) for row in rows)
        row = await tokens.revoke_token(session, args.name)
        return _("Token “{name}” is revoked: it is refused from now on.").format(name=row.name)

    print(await _with_session(settings, work))
    return 0


async def cmd_lookup(args: argparse.Namespace, settings: Settings) -> int:
    from services.access import Viewer
    from services.lookup import SavedIndex, build_index, open_saved

    if not args.batch and not args.query:
        raise CliError(_("give a query, or --batch FILE"))
    if args.limit < 1:
        raise CliError(_("--limit must be at least 1"))
    if args.batch:
        try:
            lines = Path(args.batch).read_text(encoding="utf-8-sig").splitlines()
        except OSError:
            raise CliError(_("cannot read {path}").format(path=args.batch)) from None

    async def work(session):
        # The index the bot saved (services.lookup rule 7), up to date: a second at 1M customers, not a build.
        saved = SavedIndex.under(settings.data_dir, session.get_bind().url)
        index = await open_saved(session, saved.path, database=saved.database) if saved is not None else None
        return index if index is not None else await build_index(session)

    index = await _with_session(settings, work)
    viewer = Viewer.everyone()

    def found(query: str) -> list[dict[str, Any]]:
        return [{"customer_id": m.customer_id, "name": m.name, "score": m.score, "why": m.why,
                 "matched": m.matched} for m in index.search(query, viewer, args.limit)]

    if args.batch:
        for line in lines:
            query = line.strip()
            if query:
                print(json.dumps({"query": query, "matches": found(query)}, ensure_ascii=False))
        return 0
    matches = found(args.query)
    if args.json:
        print(json.dumps(matches, ensure_ascii=False))
    elif not matches:
        print(_("No customer matches “{query}”.").format(query=args.query))
    else:
        why = {"name": _("name"), "alias": _("short name or alias"), "pinyin": _("pinyin"),
               "contact": _("contact person"), "phone": _("phone")}
        for rank, match in enumerate(matches, start=1):
            print(f"{rank}. {match['name']}  ({match['score']:.0f}, {why[match['why']]}: {match['matched']})")
    return 0


async def cmd_reminders(args: argparse.Namespace, settings: Settings) -> int:
    """`reminders due`: what the scan would create now, without creating or sending anything."""
    from datetime import UTC, datetime

    from services.erp import due_json
    from services.users import find_user

    now = None
    if args.now:
        try:
            now = datetime.fromisoformat(args.now)
        except ValueError:
            raise CliError(_("--now must be an ISO date and time, e.g. 2026-03-15T09:00+08:00")) from None
        now = now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)

    async def work(session):
        user_id = (await find_user(session, args.user)).id if args.user else None
        return await due_json(session, now, user_id)

    due = await _with_session(settings, work)
    if args.json:
        for d in due:
            print(json.dumps(d, ensure_ascii=False))
    elif not due:
        print(_("Nothing is due."))
    else:
        for d in due:
            print(f"{d['due_on']}  user {d['user_id']}  {d['kind']:<16} {d['customer'] or ''}")
        print(_("{count} reminders would be created or kept.").format(count=len(due)))
    return 0


def _today(args: argparse.Namespace, timezone: str) -> date:
    """The day a command works as of: --today when given (to reproduce a past result), else today in the
    time zone."""
    if getattr(args, "today", None):
        try:
            return date.fromisoformat(args.today)
        except ValueError:
            raise CliError(_("--today must be a date like 2026-12-03")) from None
    from models.common import today_in

    return today_in(timezone)


async def cmd_rfm(args: argparse.Namespace, settings: Settings) -> int:
    """`rfm`: score every customer now, or as of --today (the scheduler also does it daily)."""
    from services.rfm import score_all

    today = _today(args, settings.default_timezone)

    async def work(session):
        return await score_all(session, today)

    count = await _with_session(settings, work)
    print(_("{count} customers scored.").format(count=count))
    return 0


async def cmd_backup(args: argparse.Namespace, settings: Settings) -> int:
    from services.backup import backup, default_path

    url = settings.effective_database_url
    path = Path(args.output) if args.output else default_path(settings.data_dir / "backups", url)
    result = await asyncio.to_thread(backup, url, path)
    print(_("Backup written to {path} ({size} KB).").format(path=result.path, size=max(1, result.size // 1024)))
    return 0


async def cmd_restore(args: argparse.Namespace, settings: Settings) -> int:
    from bot.db import make_engine, upgrade
    from services.backup import restore

    url = settings.effective_database_url
    if not args.yes:
        if not sys.stdin.isatty():
            raise CliError(_("restore replaces every record in {url}: add --yes to confirm").format(url=_safe_url(url)))
        answer = input(_("Replace every record in {url} with {file}? Type yes to go on: ").format(
            url=_safe_url(url), file=args.file))
        if answer.strip().lower() not in ("yes", "y", "是"):
            print(_("Nothing was changed."))
            return 1
    safety = await asyncio.to_thread(restore, url, Path(args.file), settings.data_dir / "backups")
    engine = make_engine(url)
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()
    print(_("Restored {file}. The data it replaced is saved in {safety}.").format(
        file=args.file, safety=safety.path if safety else "-"))
    return 0


def cmd_test(args: list[str]) -> int:
    """Run the test suite (the README's test command), on one process more than there are cores
    (pytest-xdist, at most 4; each has its own databases and Redis database) unless -n is given: many
    tests wait on processes they started or on PostgreSQL, so one more keeps the cores busy (on 2 cores:
    8 min 50 s against 10 min 12 s with a process per core). pytest's "no tests ran" (5) is a failure here."""
    cores = os.cpu_count() or 1
    workers = min(cores + 1, 4) if cores > 1 else 1
    chosen = any(a.startswith(("-n", "--numprocesses", "--dist")) for a in args) or "no:xdist" in " ".join(args)
    if workers > 1 and not chosen:
        args = ["-n", str(workers), *args]
    env = dict(os.environ)
    code = subprocess.call([sys.executable, "-m", "pytest", *args], cwd=ROOT, env=env)
    if code == 5:
        print("No tests were collected: this counts as a failure.", file=sys.stderr)
        return 1
    return code


# --------------------------------------------------------------------------- parsing


def _parse_day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise CliError(_("“{value}” is not a date like 2026-03-15").format(value=text)) from None


def _safe_url(url: str) -> str:
    from sqlalchemy.engine.url import make_url

    return make_url(url).render_as_string(hide_password=True)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # localized usage errors, exit code 2
        self.print_usage(sys.stderr)
        print(_("Error: {message}").format(message=message), file=sys.stderr)
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    from services.exporter import EXPORT_KINDS
    from services.importer import KINDS

    parser = _Parser(prog="python main.py", description=_("FieldCRM: the CRM for field sales reps."))
    parser.add_argument("--lang", choices=LANGUAGES, help=_("language of messages and exported headers"))
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    run = sub.add_parser("run", help=_("run the bot, scheduler and HTTP app (the default)"))
    run.add_argument("--role", choices=("all", "bot", "api", "worker"), default="all",
                     help=_("all: everything in this process (default); bot: the chat (several may run); api: the "
                            "HTTP app only; worker: the scheduler and the outbox sender, and the migrations"))
    sub.add_parser("migrate", help=_("upgrade the database schema"))
    sub.add_parser("test", help=_("run the test suite"))
    demo = sub.add_parser("demo-data", help=_("add a realistic demo data set"))
    demo.add_argument("--customers", type=int, default=200, help=_("how many customers (default 200)"))
    demo.add_argument("--seed", type=int, default=42, help=_("random seed: same seed, same data"))
    demo.add_argument("--today", help=_("pretend today is this date (YYYY-MM-DD)"))
    imp = sub.add_parser("import", help=_("import a CSV or XLSX file"))
    imp.add_argument("kind", choices=KINDS)
    imp.add_argument("file")
    imp.add_argument("--dry-run", action="store_true", help=_("check the file only, change nothing"))
    imp.add_argument("--timezone", help=_("time zone of times in the file (default DEFAULT_TIMEZONE)"))
    imp.add_argument("--encoding", help=_("text encoding of a CSV file, e.g. gbk, big5, utf-8 (default: detected)"))
    imp.add_argument("--sheet", help=_("the workbook's sheet to read (default: the one with a header I know)"))
    imp.add_argument("--today", help=_("pretend today is this date (YYYY-MM-DD)"))
    imp.add_argument("--date-order", choices=("dmy", "mdy", "ymd"),
                     help=_("how the file writes dates like 03/04/2026 (default: proved by the column's other rows)"))
    exp = sub.add_parser("export", help=_("export records to CSV or XLSX"))
    exp.add_argument("kind", choices=(*EXPORT_KINDS, "report"))
    exp.add_argument("--format", choices=("csv", "xlsx"), help=_("csv or xlsx (default csv; a report is always xlsx)"))
    exp.add_argument("--output", "-o", help=_("file to write (default: DATA_DIR/exports/…)"))
    exp.add_argument("--include-archived", action="store_true", help=_("include archived customers"))
    exp.add_argument("--timezone", help=_("time zone of times in the file (default DEFAULT_TIMEZONE)"))
    exp.add_argument("--period", choices=("week", "month", "quarter", "year"), default="month",
                     help=_("report: the period ending yesterday (default month)"))
    exp.add_argument("--user", help=_("report: only this manager's team (name or Telegram id)"))
    exp.add_argument("--today", help=_("report: as if today were this date (YYYY-MM-DD), to reproduce a past report"))
    exp.add_argument("--rfm-days", type=int, choices=(90, 180, 365, 730), default=365,
                     help=_("report: days of purchases RFM looks at (default 365)"))
    look = sub.add_parser("lookup", help=_("find customers by name, short name, pinyin, contact or phone"))
    look.add_argument("query", nargs="?")
    look.add_argument("--limit", type=int, default=10, help=_("how many matches at most (default 10)"))
    look.add_argument("--json", action="store_true", help=_("print JSON"))
    look.add_argument("--batch", help=_("read one query per line from this file; print one JSON line per query"))
    user = sub.add_parser("user", help=_("add, list, change or disable users"))
    actions = user.add_subparsers(dest="action", required=True, parser_class=_Parser)
    add = actions.add_parser("add", help=_("add a user"))
    add.add_argument("name")
    add.add_argument("--role", choices=("rep", "manager", "admin"), default="rep")
    add.add_argument("--telegram-id", type=int)
    add.add_argument("--manager", help=_("the manager's name or Telegram id"))
    add.add_argument("--language", choices=LANGUAGES)
    add.add_argument("--timezone")
    actions.add_parser("list", help=_("list users"))
    role = actions.add_parser("role", help=_("change a user's role"))
    role.add_argument("user")
    role.add_argument("role", choices=("rep", "manager", "admin"))
    for action in ("disable", "enable"):
        p = actions.add_parser(action, help=_("disable a user") if action == "disable" else _("enable a user"))
        p.add_argument("user")
    tok = sub.add_parser("token", help=_("make, list or revoke ERP API tokens"))
    tok_actions = tok.add_subparsers(dest="action", required=True, parser_class=_Parser)
    make = tok_actions.add_parser("create", help=_("make a token (printed once)"))
    make.add_argument("name")
    make.add_argument("--scope", choices=("read", "write"), default="read")
    make.add_argument("--user", help=_("the token sees only what this person sees (name or Telegram id)"))
    tok_actions.add_parser("list", help=_("list tokens (never the tokens themselves)"))
    revoke = tok_actions.add_parser("revoke", help=_("refuse a token from now on"))
    revoke.add_argument("name")
    rem = sub.add_parser("reminders", help=_("show what reminders are due (nothing is sent)"))
    rem_actions = rem.add_subparsers(dest="action", required=True, parser_class=_Parser)
    due = rem_actions.add_parser("due", help=_("list the reminders the rules call for now"))
    due.add_argument("--now", help=_("pretend it is this moment (ISO 8601; UTC unless an offset is given)"))
    due.add_argument("--user", help=_("only this user (name or Telegram id)"))
    due.add_argument("--json", action="store_true", help=_("print one JSON line per reminder"))
    rfm = sub.add_parser("rfm", help=_("score every customer's recency, frequency and monetary value now"))
    rfm.add_argument("--today", help=_("pretend today is this date (YYYY-MM-DD)"))
    back = sub.add_parser("backup", help=_("write a consistent snapshot of the whole database"))
    back.add_argument("--output", "-o", help=_("file to write (default: DATA_DIR/backups/…)"))
    rest = sub.add_parser("restore", help=_("replace the whole database with a backup (stop the bot first)"))
    rest.add_argument("file")
    rest.add_argument("--yes", action="store_true", help=_("do not ask for confirmation"))
    return parser


COMMANDS = {
    "run": cmd_run, "migrate": cmd_migrate, "demo-data": cmd_demo_data, "import": cmd_import,
    "export": cmd_export, "user": cmd_user, "lookup": cmd_lookup, "token": cmd_token,
    "reminders": cmd_reminders, "rfm": cmd_rfm, "backup": cmd_backup, "restore": cmd_restore,
}


def _preflight(settings: Settings, command: str, role: str = "all") -> list[Any]:
    """Every command needs a writable DATA_DIR and a reachable database; `run` also needs its HTTP port
    (sandbox, webhook, role api) and a token Telegram accepts (not role api). Checked before anything is
    written. (Beside a polling bot the HTTP app is optional: a taken port is a warning when it starts; so is
    a role bot or worker without REDIS_URL.)"""
    from bot.preflight import check

    running = command == "run"
    serves_http = running and (role == "api" or (role != "worker" and (settings.bot_token is None
                                                                       or bool(settings.webhook_url))))
    asks = running and role != "api" and settings.bot_token is not None
    return asyncio.run(check(settings, serves_http=serves_http, asks_telegram=asks, role=role if running else None,
                             warn=lambda problem: print(problem.render(_), file=sys.stderr, flush=True)))


def main(argv: list[str]) -> int:
    global _
    if argv[:1] == ["test"]:
        return cmd_test(argv[1:])
    try:
        settings = get_settings()
    except ValidationError as exc:  # a bad setting in the environment or .env: one line per setting
        from bot.preflight import describe, language_hint

        _ = gettext_for(language_hint())
        for problem in describe(exc):
            print(_("Configuration error: {message}").format(message=problem.render(_)), file=sys.stderr)
        return 2
    lang = settings.default_language
    if "--lang" in argv and argv.index("--lang") + 1 < len(argv) and argv[argv.index("--lang") + 1] in LANGUAGES:
        lang = argv[argv.index("--lang") + 1]
    _ = gettext_for(lang)
    args = build_parser().parse_args(argv)
    args.lang = args.lang or lang
    command = args.command or "run"
    if problems := _preflight(settings, command, getattr(args, "role", None) or "all"):
        for problem in problems:
            print(_("Configuration error: {message}").format(message=problem.render(_)), file=sys.stderr)
        return 2
    try:
        return asyncio.run(COMMANDS[command](args, settings))
    except CliError as exc:
        print(_("Error: {message}").format(message=exc), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        from services.messages import DomainError

        if isinstance(exc, DomainError):
            print(_("Error: {message}").format(message=_domain_message(exc)), file=sys.stderr)
            return 2
        raise
