"""Reminder scan speed: the due set for 100k and 1M customers with 10 purchases each, on SQLite.

    .venv/bin/python bench/reminders_bench.py [--sizes 100000,1000000] [--naive-sample 20000]

For each size a database is made once in bench/out/ (migrated schema, 50 reps under 5 managers in four
time zones, customers spread over the seeded contact and purchase strategies or none, 10 purchases per
customer over three years with roll-ups and rhythms filled in, a recent interaction for 90 % of them,
a contact person per customer with a birthday), written with plain sqlite3 for speed. Then:
- `compute_due` as the scan job runs it (all rules, all recipients), best of 3;
- the scan job's other steps: the first run that creates every reminder, and a next run 15 minutes later
  (compute, skip the reminders that exist, sweep only what new activity answered), in a transaction
  that is rolled back;
- the fair baseline (issue 18), in the same run and on the same data, best of 3: one SQL statement per rule
  (`rule_statements`), each returning the due rows, counted by kind next to the product's count, with the
  ratio product time / baseline time. Twice:
  * over the raw tables: each customer's last contact is max(interaction.occurred_at) and last purchase
    max(purchase.purchased_on) (voided excluded), by GROUP BY over the rows joined to customers, strategies
    and recipients (a correlated max() for the last contact where a statement already groups over
    purchases); the learned purchase rhythm is the median gap between distinct purchase days, computed
    with window functions — that statement alone takes most of the time;
  * the same statements over the roll-up columns the customer row already has (services.rollups:
    last_contact_at, last_txn_on, purchase_gap_days).
  Rules covered as in services.reminders.compute_due: contact due / overdue (floor(cycle × factor)) and
  the manager's escalation (counted from the overdue rows), purchase lapse by strategy and by learned
  rhythm (max(rhythm × tolerance, rhythm + slack), rounded up), thank-you, birthdays (29 February on
  28 February in common years), prospects "not now" and "quoted", next steps. Local days use each
  recipient's UTC offset at `now`.
  What the baseline does NOT do that the product does: time zones are a fixed offset per recipient (no
  DST: an instant before a DST change can land one local day off, so a count may differ by a row or
  so); it returns (customer, kind) rows only — no reminder keys, periods, due dates or detail; the
  escalation is a count, not a row dated by the owner's calendar; nothing about what already exists,
  snoozes, finished reminders, retiring a "due" reminder once overdue, or closing what activity
  answered (the scan job's other steps above); no per-recipient (`user_id`) mode.
- the per-customer loop (not a fair baseline, kept for reference): every customer, two queries each (last
  interaction, last purchase), the contact and purchase cycles in Python — on a sample of customers,
  scaled to the full size (printed as such).
Figures are wall time on whatever the machine is doing: on a shared machine, runs differ by tens of percent.
Target (issue 5): <= 2 s at 1M customers / 10M purchases.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sqlite3
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import func, select, text  # noqa: E402

from bot.db import make_engine, make_sessionmaker, upgrade  # noqa: E402
from models import Customer  # noqa: E402
from services.reminders import (  # noqa: E402
    NEXT_STEP_LOOKBACK_DAYS,
    PROSPECT_LEAD_DAYS,
    QUOTED_FOLLOWUP_DAYS,
    RHYTHM_SLACK_DAYS,
    RHYTHM_TOLERANCE,
    THANK_YOU_DAYS,
    apply,
    close_answered_since,
    compute_due,
)
from services.rollups import RHYTHM_MIN_PURCHASES, median_gap  # noqa: E402
from services.sql import collector_paused, raw_rows  # noqa: E402

OUT = ROOT / "bench" / "out"
NOW = datetime(2026, 6, 15, 2, 0, tzinfo=UTC)
TODAY = NOW.date()
ZONES = ["Asia/Shanghai", "Asia/Shanghai", "Asia/Hong_Kong", "America/New_York", "Europe/Berlin"]


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")


async def database(size: int) -> str:
    path = OUT / f"reminders_v2_{size}.sqlite3"
    url = f"sqlite+aiosqlite:///{path}"
    if path.exists():
        return url
    OUT.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    engine = make_engine(f"sqlite+aiosqlite:///{partial}")
    await upgrade(engine)
    await engine.dispose()
    started = time.perf_counter()
    # The engine's last connection may still be closing in its thread: wait for it rather than fail on
    # "database is locked" (seen once on a fresh machine).
    con = sqlite3.connect(partial, timeout=30)
    con.execute("PRAGMA journal_mode=OFF")
    con.execute("PRAGMA synchronous=OFF")
    rng = random.Random(size)
    cycles = dict(con.execute("SELECT id, cycle_days FROM contact_strategy").fetchall())
    contact = list(cycles)
    purchase = [r[0] for r in con.execute("SELECT id FROM purchase_strategy")]
    created = iso(NOW - timedelta(days=1200))
    users = []
    for m in range(5):
        con.execute("INSERT INTO app_user (id, telegram_id, name, role, manager_id, language, timezone, work_start, "
                    "work_end, work_days, active, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                    (m + 1, 10_000 + m, f"Manager {m}", "manager", None, "zh_Hans", ZONES[m], "09:00:00.000000",
                     "18:00:00.000000", "12345", 1, created))
    for r in range(50):
        users.append(100 + r)
        con.execute("INSERT INTO app_user (id, telegram_id, name, role, manager_id, language, timezone, work_start, "
                    "work_end, work_days, active, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                    (100 + r, 20_000 + r, f"Rep {r}", "rep", r % 5 + 1, "zh_Hans", ZONES[r % 5], "09:00:00.000000",
                     "18:00:00.000000", "12345", 1, created))
    purchase_id = interaction_id = 0
    batch = 20_000
    for start in range(0, size, batch):
        customers, purchases, interactions, people = [], [], [], []
        for cid in range(start + 1, min(size, start + batch) + 1):
            # Reps mostly keep up: the last purchase and contact fall within ~1.3 cycles, so a realistic
            # share of customers (not most of them) is due on a given day.
            gap = rng.choice([7, 14, 30, 45, 60, 90])
            last = TODAY - timedelta(days=int(rng.random() * gap * 1.3))
            days = sorted({last - timedelta(days=gap * k + rng.randint(0, 3)) for k in range(10)})
            for d in days:
                purchase_id += 1
                purchases.append((purchase_id, cid, d.isoformat(), rng.randint(100, 10_000_00), "paid", "import",
                                  created))
            contact_at = None
            strategy = rng.choice(contact + [None])
            cycle = cycles.get(strategy, 30)
            if rng.random() < 0.9:
                interaction_id += 1
                contact_at = NOW - timedelta(days=rng.random() * cycle * 1.3, hours=rng.randint(0, 23))
                interactions.append((interaction_id, cid, users[cid % 50], "call", iso(contact_at), "[]",
                                     iso(contact_at)))
            owner = users[cid % 50] if rng.random() < 0.97 else None
            customers.append((cid, f"客户{cid}", "[]", owner, "customer", strategy,
                              rng.choice(purchase + [None, None]), len(days), 0, days[0].isoformat(),
                              days[-1].isoformat(), iso(contact_at) if contact_at else None,
                              median_gap(days, len(days)), 0, created, created))
            birthday = date(1970 + rng.randint(0, 30), rng.randint(1, 12), rng.randint(1, 28))
            people.append((cid, f"联系人{cid}", birthday.isoformat(), birthday.month * 100 + birthday.day, 0, 0, created))
        con.executemany("INSERT INTO customer (id, name, aliases, owner_id, stage, contact_strategy_id, "
                        "purchase_strategy_id, txn_count, txn_amount_cents, first_txn_on, last_txn_on, last_contact_at,"
                        " purchase_gap_days, wants_agency, created_at, updated_at) "
                        "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", customers)
        con.executemany("INSERT INTO purchase (id, customer_id, purchased_on, amount_cents, payment_status, source, "
                        "created_at) VALUES (?,?,?,?,?,?,?)", purchases)
        con.executemany("INSERT INTO interaction (id, customer_id, user_id, kind, occurred_at, attachments, created_at) "
                        "VALUES (?,?,?,?,?,?,?)", interactions)
        con.executemany("INSERT INTO contact_person (customer_id, name, birthday, birthday_mmdd, is_key, friendliness, "
                        "created_at) VALUES (?,?,?,?,?,?,?)", people)
        con.commit()
        print(f"  made {min(size, start + batch):,} / {size:,} customers", end="\r", file=sys.stderr, flush=True)
    con.execute("ANALYZE")
    con.commit()
    con.close()
    partial.rename(path)
    print(f"  data for {size:,} customers made in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return url


async def naive(session, sample: int) -> tuple[int, float]:
    """The per-customer loop (not a fair baseline): every customer, two queries, the rule in Python."""
    cycles = dict((await session.execute(text("SELECT id, cycle_days FROM contact_strategy"))).all())
    buy = dict((await session.execute(text("SELECT id, cycle_days FROM purchase_strategy"))).all())
    started = time.perf_counter()
    found = 0
    customers = (await session.execute(select(Customer).where(Customer.archived_at.is_(None)).limit(sample))).scalars()
    for c in customers:
        last_contact = await session.scalar(text("SELECT max(occurred_at) FROM interaction WHERE customer_id = :c"),
                                            {"c": c.id})
        last_buy = await session.scalar(text("SELECT max(purchased_on) FROM purchase WHERE customer_id = :c"),
                                        {"c": c.id})
        if c.contact_strategy_id:
            since = datetime.fromisoformat(last_contact).replace(tzinfo=UTC) if last_contact else c.created_at
            found += (NOW - since).days > cycles[c.contact_strategy_id]
        if c.purchase_strategy_id and last_buy:
            found += (TODAY - date.fromisoformat(last_buy)).days > buy[c.purchase_strategy_id]
    return found, time.perf_counter() - started


# --------------------------------------------------------------------------- the fair baseline: SQL per rule

KIND_ORDER = ("contact_due", "contact_overdue", "escalation", "purchase_lapse", "thank_you", "birthday", "not_now",
              "quoted", "next_step")


def zones_sql(timezones: set[str], now: datetime) -> str:
    """The recipients' time zones as a VALUES list: local today, the UTC offset at `now` as an SQLite date
    modifier, today's birthday mmdd (and 229 on 28 February of a common year). Recipients are the active
    users (app_user, by primary key) joined to this by time zone."""
    rows = []
    for timezone in sorted(timezones):
        local = now.astimezone(ZoneInfo(timezone))
        today = local.date()
        mmdd = today.month * 100 + today.day
        leap = today.year % 4 == 0 and (today.year % 100 != 0 or today.year % 400 == 0)
        rows.append(f"('{timezone}', '{today.isoformat()}', '{int(local.utcoffset().total_seconds()):+d} seconds', "
                    f"{mmdd}, {229 if mmdd == 228 and not leap else mmdd})")
    return "z(timezone, today, shift, mmdd, mmdd_alt) AS (VALUES " + ", ".join(rows) + ")"


def rule_statements(zones: str, earliest: date, *, rollup: bool) -> dict[str, str]:
    """One SQL statement per rule, by rule. `rollup`: each customer's last contact, last purchase and purchase
    rhythm come from the roll-up columns of the customer row (services.rollups); otherwise they are computed
    from the interaction and purchase rows in the statement (GROUP BY, and window functions for the rhythm)."""
    if rollup:
        # Customers first (CROSS JOIN keeps SQLite's join order): it then reads the covering partial indexes
        # on these columns (models.customer) rather than the table.
        join, contact, contacted, buy, bought, group = "CROSS JOIN", "c.last_contact_at", "", "c.last_txn_on", "", "AND"
        last_contact = "c.last_contact_at"
        rhythm, rhythm_from = "", "customer c"
        gap, rhythm_ok = "c.purchase_gap_days", "c.purchase_gap_days IS NOT NULL"
        recent = ""
    else:
        # Customers first, in id order (CROSS JOIN keeps SQLite's join order), so each GROUP BY streams over
        # the (customer_id, time) indexes without a sort.
        join, contact, group = "CROSS JOIN", "max(i.occurred_at)", "GROUP BY c.id HAVING"
        contacted = "LEFT JOIN interaction i ON i.customer_id = c.id"
        buy, bought = "max(p.purchased_on)", "JOIN purchase p ON p.customer_id = c.id AND p.voided_at IS NULL"
        # where a statement already groups over purchases: a correlated max() (the index seeks it)
        last_contact = "(SELECT max(x.occurred_at) FROM interaction x WHERE x.customer_id = c.id)"
        # the rhythm: the median gap between distinct purchase days, for the customers without a strategy
        rhythm = f""", days AS (
              SELECT DISTINCT p.customer_id, p.purchased_on FROM purchase p JOIN customer c ON c.id = p.customer_id
              WHERE p.voided_at IS NULL AND {LIVE} AND {NO_STRATEGY}),
            gaps AS (SELECT customer_id, julianday(purchased_on) - julianday(lag(purchased_on)
                     OVER (PARTITION BY customer_id ORDER BY purchased_on)) AS gap FROM days),
            ranked AS (SELECT customer_id, gap, row_number() OVER (PARTITION BY customer_id ORDER BY gap) AS k,
                       count(*) OVER (PARTITION BY customer_id) AS n FROM gaps WHERE gap IS NOT NULL),
            rhythm AS (SELECT customer_id, avg(gap) AS gap FROM ranked WHERE k IN ((n + 1) / 2, n / 2 + 1)
                       GROUP BY customer_id)"""
        rhythm_from = "rhythm g JOIN customer c ON c.id = g.customer_id"
        gap, rhythm_ok = "g.gap", f"count(*) >= {RHYTHM_MIN_PURCHASES}"
        # thank-you: only a purchase of the last few days can be a latest purchase inside the window
        recent = f" AND p.purchased_on >= '{earliest - timedelta(days=THANK_YOU_DAYS)}'"
    since_contact = f"julianday(z.today) - julianday(date(coalesce({contact}, c.created_at), z.shift))"
    since_buy = f"julianday(z.today) - julianday({buy})"
    allowed = f"ceil(max({gap} * {RHYTHM_TOLERANCE}, {gap} + {RHYTHM_SLACK_DAYS}))"
    # the recipient: the customer's owner when active, with the local calendar of their time zone
    owner_as = "{0} app_user u ON u.id = c.owner_id AND u.active {0} z ON z.timezone = u.timezone".format
    owner = owner_as(join)
    with_z = f"WITH {zones}"
    return {
        # due past the cycle, overdue past floor(cycle × factor); each overdue row with an (active) manager
        # also counts as that manager's escalation
        "contact": f"""{with_z}
            SELECT c.id, {since_contact} AS days, CAST(s.cycle_days * s.overdue_factor AS INTEGER), u.manager_id
            FROM customer c {join} contact_strategy s ON s.id = c.contact_strategy_id AND s.active
            {owner} {contacted}
            WHERE {LIVE} AND c.stage != 'definitely_not'
            {group} days > s.cycle_days""",
        "purchase strategy": f"""{with_z}
            SELECT c.id, {since_buy} AS days
            FROM customer c {join} purchase_strategy s ON s.id = c.purchase_strategy_id AND s.active
            {owner} {bought}
            WHERE {LIVE}
            {group} days > s.cycle_days""",
        # no (active) purchase strategy: past max(rhythm × tolerance, rhythm + slack), rounded up
        "purchase rhythm": f"""{with_z}{rhythm}
            SELECT c.id, {since_buy} AS days
            FROM {rhythm_from} {owner_as(join if rollup else "JOIN")} {bought}
            WHERE {LIVE} AND {NO_STRATEGY}
            {group} {rhythm_ok} AND days > {allowed}""",
        # the latest purchase day within the last few local days, nobody contacted on or after that day
        "thank you": f"""{with_z}
            SELECT c.id, {since_buy} AS days
            FROM customer c {owner} {bought}{recent}
            WHERE {LIVE}
            {group} days BETWEEN 0 AND {THANK_YOU_DAYS} AND coalesce(date({last_contact}, z.shift), '') < {buy}""",
        "birthday": f"""{with_z}
            SELECT c.id FROM contact_person p JOIN customer c ON c.id = p.customer_id {owner_as("JOIN")}
            WHERE p.archived_at IS NULL AND {LIVE} AND p.birthday_mmdd IN (z.mmdd, z.mmdd_alt)""",
        # (prospects: customers first, so the partial indexes on their stage apply)
        "not now": f"""{with_z}
            SELECT c.id FROM customer c {owner_as("CROSS JOIN")}
            WHERE c.stage = 'not_now' AND {LIVE}
                AND c.expected_purchase_on <= date(z.today, '+{PROSPECT_LEAD_DAYS} days')""",
        "quoted": f"""{with_z}
            SELECT c.id, {since_contact} AS days FROM customer c {owner_as("CROSS JOIN")} {contacted}
            WHERE c.stage = 'quoted_no_response' AND {LIVE}
            {group} days >= {QUOTED_FOLLOWUP_DAYS}""",
        # to the rep who set it (the owner if that rep is gone), unless the customer was contacted since
        "next step": f"""{with_z}
            SELECT i.id FROM interaction i JOIN customer c ON c.id = i.customer_id
            LEFT JOIN app_user a ON a.id = i.user_id AND a.active LEFT JOIN app_user o ON o.id = c.owner_id AND o.active
            JOIN z ON z.timezone = coalesce(a.timezone, o.timezone)
            WHERE i.next_step_on IS NOT NULL AND c.archived_at IS NULL
                AND i.next_step_on >= '{earliest - timedelta(days=NEXT_STEP_LOOKBACK_DAYS)}'
                AND i.next_step_on <= z.today
                AND NOT coalesce({last_contact.replace("c.id", "i.customer_id")} > i.occurred_at, 0)""",
    }


# Customers that can have reminders, spelled as the partial indexes' condition (models.customer) so that
# SQLite may read those indexes instead of the table.
LIVE = "c.archived_at IS NULL AND c.owner_id IS NOT NULL"
NO_STRATEGY = ("(c.purchase_strategy_id IS NULL OR c.purchase_strategy_id IN "
               "(SELECT id FROM purchase_strategy WHERE NOT active))")
RULE_KIND = {"purchase strategy": "purchase_lapse", "purchase rhythm": "purchase_lapse", "thank you": "thank_you",
             "birthday": "birthday", "not now": "not_now", "quoted": "quoted", "next step": "next_step"}


async def sql_baseline(session, now: datetime, *, rollup: bool) -> tuple[dict[str, int], dict[str, float]]:
    """Runs every rule's statement once: the due rows by kind, and the seconds each statement took."""
    users = dict(await raw_rows(session, text("SELECT id, timezone FROM app_user WHERE active")))
    earliest = min(now.astimezone(ZoneInfo(tz)).date() for tz in set(users.values()))
    kinds = dict.fromkeys(KIND_ORDER, 0)
    seconds = {}
    connection = await session.connection()
    with collector_paused():
        for rule, sql in rule_statements(zones_sql(set(users.values()), now), earliest, rollup=rollup).items():
            started = time.perf_counter()
            result = await connection.exec_driver_sql(sql)
            rows = result.cursor.fetchall()
            result.close()
            if rule == "contact":
                for _cid, days, overdue_after, manager in rows:
                    overdue = days > overdue_after
                    kinds["contact_overdue" if overdue else "contact_due"] += 1
                    kinds["escalation"] += overdue and manager in users  # an active manager
            else:
                kinds[RULE_KIND[rule]] += len(rows)
            seconds[rule] = time.perf_counter() - started
    return kinds, seconds


async def run(size: int, sample: int) -> None:
    url = await database(size)
    engine = make_engine(url)
    await upgrade(engine)  # a data set made by an older version gets the newer indexes
    sessions = make_sessionmaker(engine)
    async with sessions() as session:
        purchases = await session.scalar(select(func.count()).select_from(text("purchase")))
        times, due = [], []
        for _ in range(3):
            started = time.perf_counter()
            due = await compute_due(session, NOW)
            times.append(time.perf_counter() - started)
        kinds: dict[str, int] = {}
        for d in due:
            kinds[d.kind] = kinds.get(d.kind, 0) + 1
        fair = {}
        for rollup in (False, True):
            runs = [await sql_baseline(session, NOW, rollup=rollup) for _ in range(3)]
            fair[rollup] = (runs[0][0], [sum(seconds.values()) for _kinds, seconds in runs],
                            min((seconds for _kinds, seconds in runs), key=lambda x: sum(x.values())))
        n = min(sample, size)
        _, naive_seconds = await naive(session, n)
        # The whole scan job in its steady state (compute, skip what exists, sweep what activity answered),
        # after a first scan created everything; rolled back, so the data set stays as it was.
        started = time.perf_counter()
        await apply(session, due, NOW, sweep=False)
        mark = await close_answered_since(session, NOW, None)
        first = time.perf_counter() - started
        later = NOW + timedelta(minutes=15)
        started = time.perf_counter()
        again = await compute_due(session, later)
        created = await apply(session, again, later, sweep=False)
        await close_answered_since(session, later, mark)
        steady = time.perf_counter() - started
        await session.rollback()
    await engine.dispose()
    # The scan job itself, committed, on a copy of the data set: the first run writes every reminder in
    # short transactions (jobs.reminders.SCAN_BATCH); the longest write-lock hold is what the bot may wait.
    import shutil

    from bot.notify import BotPresenter
    from jobs.reminders import SCAN_BATCH, Runtime, scan

    source = Path(url.split("///", 1)[1])
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / source.name
        shutil.copyfile(source, copy)
        copied = make_engine(f"sqlite+aiosqlite:///{copy}")
        runtime = Runtime(make_sessionmaker(copied), clock=lambda: NOW, present=BotPresenter())  # escalation notices
        started = time.perf_counter()
        written = await scan(runtime, NOW)
        job_seconds = time.perf_counter() - started
        await copied.dispose()
    scaled = naive_seconds * size / n
    print(f"{size:>9,} customers, {purchases:>10,} purchases: compute_due best {min(times):.2f} s "
          f"(runs {', '.join(f'{t:.2f}' for t in times)}), {len(due):,} reminders")
    print(f"           by kind: {', '.join(f'{k} {v:,}' for k, v in sorted(kinds.items()))}")
    print(f"           scan job: first run (creates {len(due):,} reminders) {first:.1f} s; every next run "
          f"(15 min later, {len(created):,} new) {steady:.2f} s")
    print(f"           scan job as it runs (committed, {SCAN_BATCH:,} a transaction): {written:,} created in "
          f"{job_seconds:.1f} s; longest write transaction {runtime.longest_write * 1000:.0f} ms (target <= 200 ms)")
    for rollup, label in ((False, "over the raw tables (GROUP BY over interactions / purchases)"),
                          (True, "over the roll-up columns (last_contact_at, last_txn_on, purchase_gap_days)")):
        kinds_sql, totals, seconds = fair[rollup]
        best = min(totals)
        print(f"           fair baseline, one SQL statement per rule {label}: best {best:.2f} s "
              f"(runs {', '.join(f'{t:.2f}' for t in totals)}), {sum(kinds_sql.values()):,} due rows vs the "
              f"product's {len(due):,}; product/baseline {min(times) / best:.2f} (baseline "
              f"{best / min(times):.1f}× the product's time)")
        print(f"             by kind: {', '.join(f'{k} {v:,}' for k, v in sorted(kinds_sql.items()) if v)}; "
              f"per rule (s): {', '.join(f'{r} {t:.3f}' for r, t in seconds.items())}")
    print(f"           per-customer loop (not a fair baseline: two queries per customer): {naive_seconds:.2f} s for "
          f"{n:,} customers → {scaled:.1f} s scaled to {size:,}; ratio {scaled / min(times):.0f}×")


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--naive-sample", type=int, default=20_000)
    args = parser.parse_args()
    for size in (int(s) for s in args.sizes.split(",")):
        await run(size, args.naive_sample)


if __name__ == "__main__":
    asyncio.run(main())
