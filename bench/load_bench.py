"""What people wait for: N reps typing lookups into the real bot process while a manager's report and the
reminder scan run (issue 18).

    .venv/bin/python bench/load_bench.py [--customers 100000] [--users 20] [--seconds 60] [--limits on|off|both]
                                         [--think 1.0] [--warmup 40] [--observe bench|page]

The product runs as a subprocess the way `python3 main.py` runs without a BOT_TOKEN: the offline sandbox
(bot, scheduler and the Bot API stand-in in one process), on 127.0.0.1 at a free port, with
DATA_DIR=bench/out/load_run/ holding a fresh copy of a demo database made once by the product's CLI,
`main.py demo-data --customers N --seed 7 --today 2026-12-06` (kept as bench/out/load_<N>.sqlite3). The
sandbox's clock starts that Sunday at 10:00 Shanghai time (SANDBOX_START): nothing is due for people
until the bench moves it. The bot's log is kept as bench/out/load_<N>_limits_<on|off>.log.

What the sandbox cannot do from outside is done inside the child (`--child`, which then runs the
product's own `bot.cli.main(["run"])`; nothing in the bot is touched, only the stand-in Telegram):
(1) the stand-in knows only the four demo people: the child adds a chat for every rep the bench gave a
Telegram id (700,000,000 + user id; a demo set with fewer reps than --users gets reps added through
services.users.add_user, each handed every N-th customer, so everyone looks up customers of their own);
(2) the stand-in's limits (30 messages/s overall; per private chat a burst of 3, then 1/s) are fixed:
`--limits off` raises them to no limit; (3) the page's /sandbox/feed answers one person and wakes every
waiting poll on every event, so 20 people polling it cost the product's loop work that grows when replies
are slow (limits on, 300 customers: 5,345 polls in 20 s, the product's CPU 9.6 s against 6.7 s); with
`--observe bench` (the default) the child also serves /bench/feed: the same events for every chat, read
by one long poll. `--observe page` uses /sandbox/feed, one poll per waiting person, for comparison.

Over HTTP (/sandbox/send, /sandbox/tap, /sandbox/clock and the feed):
- ready: from spawning the process to the first reply to a lookup sent as soon as the port answers;
  RSS of the process then, its peak (VmHWM) and at the end; when the log says the index is complete;
- each of N reps sends a lookup (the full name, short name, pinyin or last 4 phone digits of one of their
  own customers) about every `--think` seconds (x0.5-1.5 at random), never before the previous one's
  reply came (a person waits for the answer; --think 0: at once, the most the bot can answer); the reply
  is the bot's first message in that chat with a customer button (card, list, "no match: add it?") or
  with no buttons (still loading, errors: counted and printed); a list holding the customer is tapped,
  and tap → card is timed too;
- the reps run through a warm-up (at least --warmup s, and until the log shows the whole lookup index
  and the start-up reminder scan, at most 120 s more), then the measured --seconds; at 25 % of it the demo
  admin sends /report, taps the year (all customers: summary and 3 charts), then the XLSX; at 30 % the
  bench presses ⏩ +1 day (POST /sandbox/clock, as the page's button does: the clock moves to Monday
  10:00 and, inside that request, RFM is scored, the reminder scan runs, and the reps' morning digests and
  the managers' daily and weekly reports are planned; the outbox sends them through the same stand-in);
- latency = from just before the send's HTTP call to the reply's arrival at the bench; p50/p95/p99/max
  and replies/s, overall, outside and during the report and ⏩ (until 10 s after the clock request
  returned), per 5 s, and the longest time no one got a reply; the product's job log lines on the same
  time axis;
- lost: a lookup without its reply 60 s after it was sent; then every chat's history is counted again:
  lookups sent against replies (fewer = lost, more = doubled);
- the bot's log: replies refused 429 and retried, errors, tracebacks and warnings, counted;
- CPU seconds of the product and of the bench in the window: they share the machine's cores.
Targets: p99 <= 300 ms at 20 concurrent users on 100k customers during a report and a scan; 0 replies
lost. Last measured by an independent tester: 47 replies/s at 300 customers, 30 at 100k, limits lifted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
RUN = OUT / "load_run"
DEMO_DAY = "2026-12-06"  # a Sunday: the data is made as of this day
START = "2026-12-06T10:00:00+08:00"  # the sandbox's clock: Sunday morning, nothing due for people
BENCH_IDS = 700_000_000  # Telegram ids the bench gives reps: BENCH_IDS + app_user.id
ADMIN = 1001  # the sandbox gives the demo admin this id (services.demo.SANDBOX_IDS)
LOOKUP_BUTTONS = ("cust:", "log:", "new:")  # a card, a list of matches, "no match: add it?"
OTHER_BUTTONS = ("ag:", "rem:", "reas:", "rep:")  # digests, reminders, escalations, reports
REPLY_TIMEOUT = 60.0
TARGET_P99_MS = 300


# ---------------------------------------------------------------------------------------------------- child


def child() -> int:
    """The product's `run` command in sandbox mode, with the two things the bench cannot do from outside."""
    sys.path.insert(0, str(ROOT))
    import bot.sandbox.run as sandbox_run
    import bot.sandbox.telegram as telegram

    if os.environ.get("LOAD_BENCH_LIMITS") == "off":
        original_init = telegram.BotApi.__init__

        def lifted(self, *args, **kwargs) -> None:
            original_init(self, *args, **kwargs)
            self.limits = telegram.Limits(global_per_second=10**9, private_burst=10**9, private_interval=1e-9,
                                          group_per_minute=10**9)
        telegram.BotApi.__init__ = lifted

    if os.environ.get("LOAD_BENCH_OBSERVE") == "bench":
        import bot.sandbox.app as sandbox_app

        original_create_app = sandbox_app.create_app

        def create_app(api, controls=None):
            app = original_create_app(api, controls)

            @app.get("/bench/feed")
            async def every_chat(after: int = 0, wait: float = 0) -> dict:
                """What /sandbox/feed gives one person, for every chat at once, trimmed to what the bench reads."""
                events = await api.wait_feed(after, min(max(wait, 0), 25))
                return {"ok": True, "result": {"last": after + len(events), "events": [slim(e) for e in events]}}
            return app
        sandbox_app.create_app = create_app

    if os.environ.get("LOAD_BENCH_STALLS"):  # where the bot's loop stalls: stacks written while it does
        original_run = sandbox_run.run

        async def watched(*args, **kwargs):
            watch_stalls(Path(os.environ["LOAD_BENCH_STALLS"]), asyncio.get_running_loop())
            return await original_run(*args, **kwargs)
        sandbox_run.run = watched

    original_prepare = sandbox_run.prepare

    async def prepare(sessions, **kwargs):
        from sqlalchemy import select

        from bot.sandbox.app import Persona
        from models import User

        personas = await original_prepare(sessions, **kwargs)
        async with sessions() as session:
            reps = (await session.execute(select(User).where(User.telegram_id >= BENCH_IDS)
                                          .order_by(User.telegram_id))).scalars().all()
        known = {p.telegram_id for p in personas}
        return personas + [Persona(u.telegram_id, u.name, u.role, sandbox_run.LANGUAGE_CODES.get(u.language, "en"))
                           for u in reps if u.telegram_id not in known]
    sandbox_run.prepare = prepare
    from bot.cli import main as cli_main

    return cli_main(["run"])


def watch_stalls(path: Path, loop: asyncio.AbstractEventLoop, *, over: float = 0.25) -> None:
    """A thread that writes the stacks of the bot's loop thread and the background thread to `path` each time
    the loop has not ticked for `over` seconds (diagnostics for issue 18; it needs the interpreter lock to
    sample, so a C call that holds the lock shows up as the stack just after it)."""
    import threading
    import traceback

    beat = [time.monotonic()]

    def tick() -> None:
        beat[0] = time.monotonic()
        loop.call_later(0.02, tick)

    def watcher() -> None:
        reported = 0.0
        with path.open("a") as out:
            while True:
                time.sleep(0.05)
                late = time.monotonic() - beat[0]
                if late > over and time.monotonic() - reported > over:
                    reported = time.monotonic()
                    frames = sys._current_frames()
                    out.write(f"--- loop late {late:.2f} s at {time.strftime('%X')}\n")
                    for thread in threading.enumerate():
                        if thread.ident in frames and thread.name in ("MainThread", "fieldcrm-background"):
                            out.write(f"  [{thread.name}]\n")
                            out.writelines("    " + line for line in traceback.format_stack(frames[thread.ident])[-int(os.environ.get("LOAD_BENCH_STALL_FRAMES", "8")):])
                    out.flush()

    loop.call_soon(tick)
    threading.Thread(target=watcher, name="stall-watch", daemon=True).start()


def slim(event: dict) -> dict:
    message = event.get("message")
    if not isinstance(message, dict):
        return {"type": event.get("type"), "chat_id": event.get("chat_id"), "text": str(event.get("text") or "")[:100]}
    kept = {k: message[k] for k in ("message_id", "from", "reply_markup") if k in message}
    kept.update({k: True for k in ("photo", "document") if k in message})
    kept.update({k: message[k][:100] for k in ("text", "caption") if message.get(k)})
    return {"type": event.get("type"), "chat_id": event.get("chat_id"), "message": kept}


# ---------------------------------------------------------------------------------------------------- data


def pristine(customers: int) -> Path:
    """The demo database of this size, made once with the product's CLI and kept."""
    path = OUT / f"load_{customers}.sqlite3"
    if path.exists():
        return path
    OUT.mkdir(parents=True, exist_ok=True)
    making = OUT / f"load_{customers}.making.sqlite3"
    for stale in OUT.glob(making.name + "*"):
        stale.unlink()
    print(f"making the demo database: {customers:,} customers (once; kept as {path.relative_to(ROOT)})", flush=True)
    started = time.perf_counter()
    env = clean_env(DATA_DIR=str(OUT), DATABASE_URL=f"sqlite+aiosqlite:///{making}")
    subprocess.run([sys.executable, str(ROOT / "main.py"), "--lang", "en", "demo-data", "--customers", str(customers),
                    "--seed", "7", "--today", DEMO_DAY], cwd=OUT, env=env, check=True, stdout=subprocess.DEVNULL)
    with sqlite3.connect(making) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    making.rename(path)
    for leftover in OUT.glob(making.name + "-*"):
        leftover.unlink()
    print(f"  made in {time.perf_counter() - started:.0f} s", flush=True)
    return path


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in (
        "BOT_TOKEN", "DATABASE_URL", "REDIS_URL", "WEBHOOK_URL", "BOT_API_URL", "ADMIN_IDS", "HTTP_PORT", "HTTP_HOST",
        "SANDBOX_START", "LOG_FORMAT", "DATA_DIR")}
    env.update(FIELDCRM_NO_BOOTSTRAP="1", PYTHONUNBUFFERED="1", **extra)
    return env


@dataclass
class Target:
    customer_id: int
    name: str
    query: str


@dataclass
class Rep:
    telegram_id: int
    name: str
    targets: list[Target]


async def add_reps(database: Path, count: int) -> None:
    """Small demo sets have only a few reps: add reps (through the product's own service) and give each
    every count-th customer, so every simulated person looks up customers of their own."""
    sys.path.insert(0, str(ROOT))
    from sqlalchemy import select

    from bot.db import make_engine, make_sessionmaker
    from models import Role, User
    from services.users import add_user

    engine = make_engine(f"sqlite+aiosqlite:///{database}")
    try:
        async with make_sessionmaker(engine)() as session, session.begin():
            manager = await session.scalar(select(User).where(User.role == Role.manager).order_by(User.id))
            for k in range(count):
                await add_user(session, name=f"Bench rep {k + 1}", role=Role.rep, manager_id=manager.id, actor="cli")
    finally:
        await engine.dispose()


def prepare_run(customers: int, users: int, seed: int) -> list[Rep]:
    """A fresh copy of the demo database for one run; the first `users` reps get Telegram ids; what each
    of them will type."""
    sys.path.insert(0, str(ROOT))
    from services.lookup import name_cores
    from services.textnorm import pinyin

    source = pristine(customers)
    if RUN.exists():
        shutil.rmtree(RUN)
    RUN.mkdir(parents=True)
    database = RUN / "fieldcrm.sqlite3"
    shutil.copyfile(source, database)
    with sqlite3.connect(database) as db:
        reps = db.execute("SELECT id FROM app_user WHERE role = 'rep' AND active ORDER BY id").fetchall()
    if len(reps) < users:
        asyncio.run(add_reps(database, users - len(reps)))
    rng = random.Random(seed)
    with sqlite3.connect(database) as db:
        reps = db.execute("SELECT id, name FROM app_user WHERE role = 'rep' AND active ORDER BY id").fetchall()[:users]
        owned = {rep_id: [] for rep_id, _ in reps}
        for row in db.execute("SELECT id, owner_id FROM customer WHERE archived_at IS NULL ORDER BY id"):
            owned.setdefault(row[1], []).append(row[0])
        empty = [rep_id for rep_id, _ in reps if not owned.get(rep_id)]
        if empty:  # the added reps: every len(reps)-th customer moves to them
            every = db.execute("SELECT id FROM customer WHERE archived_at IS NULL ORDER BY id").fetchall()
            for n, (customer_id,) in enumerate(every):
                if n % len(reps) < len(empty):
                    db.execute("UPDATE customer SET owner_id = ? WHERE id = ?", (empty[n % len(reps)], customer_id))
        db.executemany("UPDATE app_user SET telegram_id = ? WHERE id = ?", [(BENCH_IDS + i, i) for i, _ in reps])
        people = []
        for rep_id, name in reps:
            rows = db.execute("SELECT id, name, short_name, phone FROM customer WHERE owner_id = ? AND archived_at IS "
                              "NULL ORDER BY id", (rep_id,)).fetchall()
            targets = []
            for customer_id, full, short, phone in rng.sample(rows, min(40, len(rows))):
                forms = [full, short or full]
                if re.search(r"[\u4e00-\u9fff]{2}", full):
                    forms.append(pinyin(name_cores([full])[0]))
                digits = re.sub(r"\D", "", phone or "")
                if len(digits) >= 7:
                    forms.append(digits[-4:])
                forms = [f.strip() for f in forms if f and f.strip()]
                targets.append(Target(customer_id, full, rng.choice(forms)))
            people.append(Rep(BENCH_IDS + rep_id, name, targets))
    return people


# ---------------------------------------------------------------------------------------------------- process


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_status(pid: int) -> dict[str, float]:
    """VmRSS / VmHWM in MB and CPU seconds of a process (0 when it is gone)."""
    found = {"rss": 0.0, "hwm": 0.0, "cpu": 0.0}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(("VmRSS:", "VmHWM:")):
                found["rss" if line.startswith("VmRSS") else "hwm"] = int(line.split()[1]) / 1024
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        found["cpu"] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return found


def stop(process: subprocess.Popen) -> None:
    """SIGTERM (the bot finishes what it is doing), then SIGKILL to the process group it leads."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


# ---------------------------------------------------------------------------------------------------- people


def buttons(event: dict) -> list[str]:
    rows = (event.get("message") or {}).get("reply_markup", {}).get("inline_keyboard", [])
    return [b.get("callback_data") or "" for row in rows for b in row]


def bot_message(event: dict, user: int) -> bool:
    return event.get("type") == "message" and event["message"].get("from", {}).get("id") != user


def reply_kind(event: dict) -> str | None:
    """What a message the bot put into a rep's chat is: a lookup's reply, a plain reply (no buttons: still
    loading, an error), or something else (a digest, a notice)."""
    message = event["message"]
    data = buttons(event)
    if any(d.startswith(OTHER_BUTTONS) for d in data) or "photo" in message or "document" in message:
        return None
    if any(d.startswith(LOOKUP_BUTTONS) for d in data):
        return "lookup"
    return "plain" if not data else None


@dataclass
class Sample:
    sent: float  # perf_counter
    latency: float | None  # seconds; None: no reply within REPLY_TIMEOUT
    kind: str = "lookup"  # lookup, plain, tap


@dataclass
class Run:
    base: str
    http: object  # httpx.AsyncClient
    stop_at: float = 0.0
    measure_from: float = 0.0
    closing: bool = False  # the last long poll is short, so the product's shutdown finds none open
    samples: list[Sample] = field(default_factory=list)
    taps: list[Sample] = field(default_factory=list)
    plain: dict[str, int] = field(default_factory=dict)
    other: dict[str, int] = field(default_factory=dict)
    after: dict[int, int] = field(default_factory=dict)  # per chat: the feed position read up to
    tapped: dict[int, int] = field(default_factory=dict)  # per chat: list buttons tapped
    observe: str = "bench"  # bench: one poll of /bench/feed for every chat; page: /sandbox/feed per person
    queues: dict[int, asyncio.Queue] = field(default_factory=dict)  # bench: per chat, (event, arrived)
    history: dict[int, list[dict]] = field(default_factory=dict)  # bench: every event, per chat
    feed_polls: int = 0
    send_errors: list[str] = field(default_factory=list)

    async def post(self, path: str, **body: object) -> object:
        reply = (await self.http.post(self.base + path, json=body, timeout=180)).json()
        if not reply.get("ok"):
            raise RuntimeError(f"{path}: {reply}")
        return reply["result"]

    async def events(self, user: int, wait: float) -> list[dict]:
        self.feed_polls += 1
        reply = (await self.http.get(self.base + "/sandbox/feed", params={
            "user": user, "after": self.after.get(user, 0), "wait": wait}, timeout=wait + 30)).json()["result"]
        self.after[user] = reply["last"]
        return reply["events"]

    def queue(self, chat: int) -> asyncio.Queue:
        return self.queues.setdefault(chat, asyncio.Queue())

    async def poll_every_chat(self) -> None:
        """observe=bench: one long poll for every chat; each event goes to its chat's queue, stamped."""
        after = 0
        while True:
            self.feed_polls += 1
            if self.closing:
                return
            reply = (await self.http.get(self.base + "/bench/feed", params={
                "after": after, "wait": 5}, timeout=60)).json()["result"]
            arrived = time.perf_counter()
            after = reply["last"]
            for event in reply["events"]:
                chat = event.get("chat_id")
                self.history.setdefault(chat, []).append(event)
                self.queue(chat).put_nowait((event, arrived))

    def _count_other(self, event: dict, user: int) -> None:
        if bot_message(event, user) and user != ADMIN:
            text = (event["message"].get("text") or event["message"].get("caption") or "")[:24]
            key = "photo" if "photo" in event["message"] else text.replace("\n", " ")
            self.other[key] = self.other.get(key, 0) + 1

    async def next_message(self, user: int, deadline: float, want) -> tuple[dict | None, float]:
        """The first event in this chat that `want` accepts, and when it arrived; others are counted."""
        if self.observe == "bench":
            queue = self.queue(user)
            while (left := deadline - time.perf_counter()) > 0:
                try:
                    event, arrived = await asyncio.wait_for(queue.get(), left)
                except TimeoutError:
                    break
                if want(event):
                    return event, arrived
                self._count_other(event, user)
            return None, time.perf_counter()
        while (left := deadline - time.perf_counter()) > 0:
            for event in await self.events(user, min(20.0, max(0.05, left))):
                if want(event):
                    return event, time.perf_counter()
                self._count_other(event, user)
        return None, time.perf_counter()

    async def chat_history(self, user: int) -> list[dict]:
        if self.observe == "bench":
            return self.history.get(user, [])
        return (await self.http.get(self.base + "/sandbox/feed", params={"user": user, "after": 0},
                                    timeout=60)).json()["result"]["events"]


async def rep_loop(run: Run, rep: Rep, think: float, rng: random.Random) -> None:
    user = rep.telegram_id
    while time.perf_counter() < run.stop_at:
        target = rng.choice(rep.targets)
        sent = time.perf_counter()
        try:
            await run.post("/sandbox/send", user=user, text=target.query)
        except Exception as exc:  # the stand-in refused or did not answer: note it, go on
            run.send_errors.append(f"{type(exc).__name__}: {exc}"[:200])
            await asyncio.sleep(1)
            continue

        def is_reply(event: dict) -> bool:
            return bot_message(event, user) and reply_kind(event) is not None
        reply, at = await run.next_message(user, sent + REPLY_TIMEOUT, is_reply)
        kind = reply_kind(reply) if reply else "lookup"
        run.samples.append(Sample(sent, at - sent if reply else None, kind))
        if kind == "plain":
            key = ("measured: " if sent >= run.measure_from else "warm-up: ") + (reply["message"].get("text") or "")[
                :60].replace("\n", " ")
            run.plain[key] = run.plain.get(key, 0) + 1
        card = f"cust:card:{target.customer_id}"
        if reply and card in buttons(reply) and not any(d.startswith("log:") for d in buttons(reply)):
            tapped = time.perf_counter()  # a list with the customer in it: open the card
            await run.post("/sandbox/tap", user=user, message_id=reply["message"]["message_id"], data=card)
            run.tapped[user] = run.tapped.get(user, 0) + 1

            def is_card(event: dict) -> bool:
                return bot_message(event, user) and any(d.startswith("log:") for d in buttons(event))
            opened, at = await run.next_message(user, tapped + REPLY_TIMEOUT, is_card)
            run.taps.append(Sample(tapped, at - tapped if opened else None, "tap"))
        pause = sent + think * rng.uniform(0.5, 1.5) - time.perf_counter()
        if pause > 0:
            await asyncio.sleep(pause)


def failure_texts() -> tuple[str, ...]:
    """How the bot says an update failed and was rolled back (bot/errors.py), in each language."""
    sys.path.insert(0, str(ROOT))
    from bot.i18n import gettext_for

    msgid = "Sorry, that did not work and nothing was saved. Please try again in a moment."
    return tuple(gettext_for(language)(msgid)[:12] for language in ("zh_Hans", "zh_Hant", "en"))


async def report(run: Run, at: float, marks: dict) -> None:
    """The demo admin: /report, the year (all customers) — summary and charts — then the spreadsheet. A step
    that the bot answers with an alert or "nothing was saved" ends it (marks["report_error"])."""
    failures = failure_texts()

    def failed(event: dict) -> bool:
        if event.get("type") == "alert":
            return True
        return bot_message(event, ADMIN) and (event["message"].get("text") or "").startswith(failures)

    async def step(deadline: float, wanted, what: str) -> tuple[dict | None, float]:
        event, arrived = await run.next_message(ADMIN, deadline, lambda e: failed(e) or (
            bot_message(e, ADMIN) and wanted(e)))
        if event is None or failed(event):
            text = "" if event is None else (event.get("text") or event["message"].get("text") or "")
            marks["report_error"] = f"{what}: " + (text[:80] if event else f"nothing within {deadline - start:.0f} s")
            marks["report_end"] = arrived
            return None, arrived
        return event, arrived

    await asyncio.sleep(max(0.0, at - time.perf_counter()))
    marks["report_start"] = start = time.perf_counter()
    if run.observe == "page":
        run.after[ADMIN] = (await run.http.get(run.base + "/sandbox/feed", params={"user": ADMIN})).json()["result"][
            "last"]
    else:
        while not run.queue(ADMIN).empty():  # what came before (digests) is not the report
            run.queue(ADMIN).get_nowait()
    await run.post("/sandbox/send", user=ADMIN, text="/report")
    periods, _ = await step(start + 120, lambda e: any(d.startswith("rep:year") for d in buttons(e)), "/report")
    if periods is None:
        return
    year = next(d for d in buttons(periods) if d.startswith("rep:year"))
    tapped = time.perf_counter()
    await run.post("/sandbox/tap", user=ADMIN, message_id=periods["message"]["message_id"], data=year)
    summary, at = await step(tapped + 180, lambda e: any(":xlsx:" in d for d in buttons(e)), "year summary")
    if summary is None:
        return
    marks["summary"] = at - tapped
    charts = 0
    while charts < 3:
        photo, at = await step(tapped + 180, lambda e: "photo" in e["message"], "charts")
        if photo is None:
            return
        charts += 1
        marks["charts"], marks["chart_count"] = at - tapped, charts
    xlsx = next(d for d in buttons(summary) if ":xlsx:" in d)
    tapped_x = time.perf_counter()
    await run.post("/sandbox/tap", user=ADMIN, message_id=summary["message"]["message_id"], data=xlsx)
    document, at = await step(tapped_x + 180, lambda e: "document" in e["message"], "XLSX")
    marks["xlsx"] = at - tapped_x if document else None
    marks["report_end"] = at


async def clock(run: Run, at: float, marks: dict) -> None:
    """⏩ +1 day, as the sandbox page's button does: the request returns when the jobs it runs are done."""
    await asyncio.sleep(max(0.0, at - time.perf_counter()))
    marks["clock_start"] = time.perf_counter()
    marks["clock_now"] = await run.post("/sandbox/clock", hours=24)
    marks["clock_end"] = time.perf_counter()


async def recount(run: Run, reps: list[Rep]) -> dict[str, int]:
    """After the run, every chat's whole history: lookups sent against replies (a tapped list's card is
    not a lookup's reply, so the taps made in that chat are taken off)."""
    sent = replies = lost = doubled = 0
    for rep in reps:
        user = rep.telegram_id
        mine = [e for e in await run.chat_history(user) if e["type"] == "message"]
        asked = sum(1 for e in mine if e["message"]["from"]["id"] == user)
        answered = sum(1 for e in mine if bot_message(e, user) and reply_kind(e) is not None) - run.tapped.get(user, 0)
        sent, replies = sent + asked, replies + answered
        lost += max(0, asked - answered)
        doubled += max(0, answered - asked)
    return {"sent": sent, "replies": replies, "lost": lost, "doubled": doubled}


# ---------------------------------------------------------------------------------------------------- one run


def percentile(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(p * len(values)))] if values else float("nan")


def figures(samples: list[Sample], seconds: float) -> str:
    got = [s.latency * 1000 for s in samples if s.latency is not None]
    missing = sum(1 for s in samples if s.latency is None)
    if not got:
        return f"{len(samples)} sent, no reply"
    return (f"{len(got):5d} replies {len(got) / seconds:5.1f}/s | p50 {percentile(got, 0.5):6.0f} p95 "
            f"{percentile(got, 0.95):6.0f} p99 {percentile(got, 0.99):6.0f} max {max(got):6.0f} ms"
            + (f" | {missing} without reply" if missing else ""))


async def run_once(reps: list[Rep], customers: int, seconds: float, limits: str, think: float, warmup: float,
                   seed: int, observe: str) -> dict:
    import httpx

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = RUN / "process.log"
    env = clean_env(DATA_DIR=str(RUN), HTTP_HOST="127.0.0.1", HTTP_PORT=str(port), SANDBOX_START=START,
                    LOG_LEVEL="INFO", DEFAULT_LANGUAGE="zh_Hans", LOAD_BENCH_LIMITS=limits,
                    LOAD_BENCH_OBSERVE=observe)
    result: dict = {"limits": limits, "customers": customers, "users": len(reps), "observe": observe}
    bench_cpu0 = proc_status(os.getpid())["cpu"]
    with log_path.open("w") as log:
        spawned = time.perf_counter()
        process = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--child"], cwd=RUN, env=env,
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    rss_peak = 0.0
    try:
        limits_http = httpx.Limits(max_connections=2 * len(reps) + 20, max_keepalive_connections=2 * len(reps) + 20)
        async with httpx.AsyncClient(limits=limits_http, timeout=60) as http:
            try:
                run = Run(base, http, observe=observe)
                while True:  # the port answers once the sandbox serves (before the bot polls)
                    if process.poll() is not None:
                        raise RuntimeError(f"the product exited ({process.returncode}):\n" + log_path.read_text()[-3000:])
                    with contextlib.suppress(httpx.HTTPError):
                        if (await http.get(base + "/sandbox/state", timeout=2)).status_code == 200:
                            break
                    if time.perf_counter() - spawned > 600:
                        raise RuntimeError("the sandbox did not serve within 600 s")
                    await asyncio.sleep(0.05)
                poller = asyncio.create_task(run.poll_every_chat()) if observe == "bench" else None
                probe = reps[0]
                run.after[probe.telegram_id] = 0
                await run.post("/sandbox/send", user=probe.telegram_id, text=probe.targets[0].name)
                first, at = await run.next_message(probe.telegram_id, time.perf_counter() + 600, lambda e: bot_message(
                    e, probe.telegram_id) and reply_kind(e) is not None)
                if first is None:
                    raise RuntimeError("no reply within 600 s of the start:\n" + log_path.read_text()[-3000:])
                result["ready"] = at - spawned
                status = proc_status(process.pid)
                result["ready_rss"] = status["rss"]

                marks: dict = {}
                index_done: list[float] = []

                async def watch() -> None:
                    nonlocal rss_peak
                    while True:
                        status = proc_status(process.pid)
                        rss_peak = max(rss_peak, status["hwm"], status["rss"])
                        if not index_done and "lookup index complete" in log_path.read_text(errors="replace"):
                            index_done.append(time.perf_counter() - spawned)
                        await asyncio.sleep(0.5)
                watcher = asyncio.create_task(watch())
                rng = random.Random(seed)
                warm_from = time.perf_counter()
                run.measure_from = run.stop_at = float("inf")
                tasks = [asyncio.create_task(rep_loop(run, rep, think, random.Random(rng.random()))) for rep in reps]
                # The warm-up: at least `warmup` seconds, and until the whole index and the start-up scan are done
                # (at most 120 s more), so the measured window starts after what every start does.
                await asyncio.sleep(warmup)
                while time.perf_counter() < warm_from + warmup + 120:
                    text = log_path.read_text(errors="replace")
                    if "lookup index complete" in text and "reminder scan:" in text:
                        break
                    await asyncio.sleep(0.5)
                measure_from = run.measure_from = time.perf_counter()
                result["measure_wall"] = time.time()
                run.stop_at = measure_from + seconds
                cpu_at = {"from": (proc_status(process.pid)["cpu"], proc_status(os.getpid())["cpu"])}
                result["load_from"] = os.getloadavg()[0]

                async def cpu_mark() -> None:
                    await asyncio.sleep(max(0.0, run.stop_at - time.perf_counter()))
                    cpu_at["to"] = (proc_status(process.pid)["cpu"], proc_status(os.getpid())["cpu"])
                    result["load_to"] = os.getloadavg()[0]
                tasks.append(asyncio.create_task(report(run, measure_from + 0.25 * seconds, marks)))
                tasks.append(asyncio.create_task(clock(run, measure_from + 0.3 * seconds, marks)))
                tasks.append(asyncio.create_task(cpu_mark()))
                await asyncio.gather(*tasks)
                result["after_run"] = time.perf_counter() - run.stop_at  # the last replies and the jobs' tail
                await asyncio.sleep(2)  # anything still on its way
                result["recount"] = await recount(run, reps)
                watcher.cancel()
                run.closing = True
                if poller is not None:
                    await asyncio.wait_for(poller, 30)
                status = proc_status(process.pid)
                result["end_rss"], rss_peak = status["rss"], max(rss_peak, status["hwm"])
            finally:  # on the way out (Ctrl+C too): nothing of ours keeps running after the client closes
                others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
                for task in others:
                    task.cancel()
                await asyncio.gather(*others, return_exceptions=True)
    finally:
        stop(process)
    result["peak_rss"] = rss_peak
    result["index_done"] = index_done[0] if index_done else None
    if "from" in cpu_at and "to" in cpu_at:
        result["cpu_product"] = cpu_at["to"][0] - cpu_at["from"][0]
        result["cpu_bench"] = cpu_at["to"][1] - cpu_at["from"][1]
    result["bench_cpu_total"] = proc_status(os.getpid())["cpu"] - bench_cpu0
    kept = OUT / f"load_{customers}_limits_{limits}.log"  # RUN is emptied by the next run
    shutil.copyfile(log_path, kept)
    result.update(run=run, marks=marks, warm_from=warm_from, measure_from=measure_from, seconds=seconds,
                  log=log_path.read_text(errors="replace"), exit=process.returncode, log_path=kept)
    return result


def log_findings(text: str) -> list[str]:
    """Errors, tracebacks and warnings in the bot's log, counted by their message (numbers folded)."""
    counts: dict[str, int] = {}
    for line in text.splitlines():
        m = re.match(r"\S+ \S+ (ERROR|WARNING|CRITICAL) (\S+): (.*)", line)
        if m and "Received SIGTERM" in m[3]:  # the bench stopping it
            continue
        if m:
            key = f"{m[1]} {m[2]}: " + re.sub(r"\d+(\.\d+)?", "N", m[3])[:110]
        elif line.startswith("Traceback"):
            key = "Traceback"
        else:
            continue
        counts[key] = counts.get(key, 0) + 1
    return [f"{n:5d} x {key}" for key, n in sorted(counts.items(), key=lambda kv: -kv[1])]


def show(result: dict, think: float) -> None:
    run, marks, seconds = result["run"], result["marks"], result["seconds"]
    start, end = result["measure_from"], result["measure_from"] + seconds
    limits = "on (30/s overall, private chat burst 3 then 1/s)" if result["limits"] == "on" else "lifted"
    print(f"\n=== {result['customers']:,} customers, {result['users']} reps, think {think:g} s, Telegram limits "
          f"{limits}, replies read by {result['observe']} feed ===")
    index = f", lookup index complete {result['index_done']:.1f} s" if result.get("index_done") else ""
    print(f"ready (spawn → first reply) {result['ready']:.1f} s, RSS then {result['ready_rss']:.0f} MB{index}; "
          f"RSS peak {result['peak_rss']:.0f} MB, at the end {result['end_rss']:.0f} MB (README target: ready <= 5 s "
          "at 100k)")
    rel = {k: v - start for k, v in marks.items() if k.endswith(("_start", "_end")) and isinstance(v, float)}
    if "report_start" in rel:
        done = [f"summary {marks['summary']:.1f} s after the tap"] if "summary" in marks else []
        if "chart_count" in marks:
            done.append(f"{marks['chart_count']} charts {marks['charts']:.1f} s")
        if marks.get("xlsx") is not None:
            done.append(f"XLSX {marks['xlsx']:.1f} s after its tap")
        failed = f"; FAILED at {marks['report_error']}" if "report_error" in marks else ""
        print(f"report (demo admin, /report → year, all customers): asked at +{rel['report_start']:.1f} s; "
              + "".join(f"{d}, " for d in done) + f"done at +{rel.get('report_end', float('nan')):.1f} s{failed}")
    if "clock_start" in rel:
        print(f"⏩ +1 day (RFM, reminder scan, digests planned; POST /sandbox/clock): +{rel['clock_start']:.1f} s → "
              f"+{rel.get('clock_end', float('nan')):.1f} s ({rel.get('clock_end', float('nan')) - rel['clock_start']:.1f}"
              f" s), clock now {marks.get('clock_now')}")
    measured = [s for s in run.samples if start <= s.sent < end]
    warm = [s for s in run.samples if s.sent < start]
    busy = []
    if "report_start" in marks:
        busy.append((marks["report_start"], marks.get("report_end", end)))
    if "clock_start" in marks:
        busy.append((marks["clock_start"], marks.get("clock_end", end) + 10))
    during = [s for s in measured if any(a <= s.sent <= b for a, b in busy)]
    quiet = [s for s in measured if not any(a <= s.sent <= b for a, b in busy)]
    span, reach = 0.0, start
    for a, b in sorted((max(a, start), min(b, end)) for a, b in busy):  # the union of the windows
        if b > reach:
            span, reach = span + b - max(a, reach), b
    print(f"lookups, measured {seconds:g} s     {figures(measured, seconds)}")
    print(f"  outside report and ⏩      {figures(quiet, max(1.0, seconds - span))}")
    print(f"  during report or ⏩ (+10 s){figures(during, max(1.0, span))}")
    warm_s = start - result["warm_from"]
    print(f"  warm-up before ({warm_s:.0f} s)        {figures(warm, max(1.0, warm_s))}")
    taps = [s for s in run.taps if start <= s.sent < end]
    if taps:
        print(f"taps on a list → card       {figures(taps, seconds)}")
    got = [s.latency * 1000 for s in measured if s.latency is not None]
    p99 = percentile(got, 0.99)
    rc = result["recount"]
    lost_live = sum(1 for s in run.samples if s.latency is None)
    print(f"target p99 <= {TARGET_P99_MS} ms: {'met' if p99 <= TARGET_P99_MS else 'NOT met'} ({p99:.0f} ms) | replies "
          f"lost: {rc['lost']} of {rc['sent']} lookups by the chats' histories (target 0), {lost_live} without a reply "
          f"within {REPLY_TIMEOUT:.0f} s, {rc['doubled']} doubled | tester's last figures (limits lifted): 47 "
          "replies/s at 300 customers, 30 at 100k")
    arrivals = sorted(s.sent + s.latency for s in run.samples if s.latency is not None and start <= s.sent + s.latency < end)
    gaps = [(b - a, a) for a, b in zip([start, *arrivals], [*arrivals, end], strict=True)]
    if gaps:
        gap, at = max(gaps)
        print(f"longest time without a reply to anyone: {gap:.1f} s, from +{at - start:.1f} s")
    for line in result["log"].splitlines():  # what the product's jobs logged, on the same time axis
        m = re.match(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) INFO (fieldcrm\.jobs|fieldcrm): (.*)", line)
        if m and ("jobs" in m[3] or "index complete" in m[4]):
            wall = time.mktime(time.strptime(m[1], "%Y-%m-%d %H:%M:%S")) + int(m[2]) / 1000
            print(f"  log {wall - result['measure_wall']:+7.1f} s  {m[4][:100]}")
    print("per 5 s (from the start of the measured window):")
    row = []
    for k in range(int(seconds // 5)):
        chunk = [s for s in measured if start + 5 * k <= s.sent < start + 5 * (k + 1)]
        got = [s.latency * 1000 for s in chunk if s.latency is not None]
        row.append(f"+{5 * k:>2}s {len(got):3d} p50 {percentile(got, 0.5):5.0f} max {max(got) if got else 0:5.0f}")
        if len(row) == 3:
            print("  " + " | ".join(row))
            row = []
    if row:
        print("  " + " | ".join(row))
    if run.plain:
        print("replies without buttons (loading, errors): " + "; ".join(f"{n} x {t}" for t, n in run.plain.items()))
    if run.other:
        top = sorted(run.other.items(), key=lambda kv: -kv[1])[:6]
        print(f"other bot messages in reps' chats meanwhile ({sum(run.other.values())}): "
              + "; ".join(f"{n} x {t}" for t, n in top))
    if run.send_errors:
        print(f"send errors: {len(run.send_errors)}, first: {run.send_errors[0]}")
    if "cpu_product" in result:
        print(f"CPU in the measured window: product {result['cpu_product']:.1f} s, bench {result['cpu_bench']:.1f} s of "
              f"{seconds:g} s x {os.cpu_count()} cores; load average {result['load_from']:.1f} → {result['load_to']:.1f}; "
              f"bench feed polls {run.feed_polls}; the last replies and "
              f"the jobs' tail took {result['after_run']:.1f} s after the window; process exit code {result['exit']}")
    findings = log_findings(result["log"])
    floods = len(re.findall(r"flood control on", result["log"]))
    again = len(re.findall(r"was handled before: skipped", result["log"]))
    print(f"bot's log ({result['log_path'].relative_to(ROOT)}): {floods} replies refused 429 and retried by the bot; "
          f"{again} updates handed to the handlers a second time in this run (skipped by the update ledger); "
          + ("no errors or warnings" if not findings else f"{len(findings)} kinds of errors/warnings:"))
    for line in findings[:12]:
        print("  " + line)


def product_version() -> str:
    """Which code the child runs: the commit, and product files changed since (another edit may be under way)."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
        changed = subprocess.run(["git", "status", "--porcelain", "--", ".", ":!bench"], cwd=ROOT, capture_output=True,
                                 text=True, check=True).stdout.split("\n")
    except (OSError, subprocess.CalledProcessError):
        return f"{ROOT} (not a git checkout)"
    changed = [line[3:] for line in changed if line.strip()]
    return f"git {head}" + (f" with uncommitted changes in {', '.join(changed)}" if changed else ", clean")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--limits", choices=("on", "off", "both"), default="both")
    parser.add_argument("--think", type=float, default=1.0, help="seconds between one rep's lookups (x0.5-1.5)")
    parser.add_argument("--warmup", type=float, default=40, help="seconds of lookups after ready, not measured")
    parser.add_argument("--seed", type=int, default=18)
    parser.add_argument("--observe", choices=("bench", "page"), default="bench",
                        help="bench: one long poll for every chat; page: the page's /sandbox/feed, one per person")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        sys.exit(child())
    if not 1 <= args.users <= 200 or not 5 <= args.seconds <= 600 or not 0 <= args.warmup <= 300:
        parser.error("--users 1-200, --seconds 5-600, --warmup 0-300")

    def interrupted(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, interrupted)  # the finally blocks stop the product process
    print(f"load bench: {os.cpu_count()} cores shared with the bench itself and whatever else runs here; "
          f"figures are noisy; product: {product_version()}", flush=True)
    for limits in (("on", "off") if args.limits == "both" else (args.limits,)):
        reps = prepare_run(args.customers, args.users, args.seed)
        result = asyncio.run(run_once(reps, args.customers, args.seconds, limits, args.think, args.warmup, args.seed,
                                      args.observe))
        show(result, args.think)
        sys.stdout.flush()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        print("interrupted: the product process was stopped", file=sys.stderr)
        sys.exit(130)
