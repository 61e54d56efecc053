"""ERP sync API speed on PostgreSQL: batch purchase upserts per second and single-customer reads.

    .venv/bin/python bench/api_bench.py [--customers 100000] [--purchases 200000] [--reads 1000]
                                        [--url postgresql+asyncpg://postgres@127.0.0.1:5432/postgres]
                                        [--keep-customers]

Makes a fresh database `fieldcrm_api_bench` on that server (dropped first), migrates it, adds the
customers (with ERP codes, through services.importer.import_records) — or, with --keep-customers, copies
the customers a previous run with that option kept (`fieldcrm_api_bench_<N>`, made once, migrations at
the time) — then serves the real API app with uvicorn on 127.0.0.1 and, over HTTP from this process:
- POSTs the purchases to /api/v1/purchases/batch, 5,000 a request (new orders), and prints purchases/s;
  then the same batches again (every one already present: the idempotent replay) and prints that too;
- the baseline in the same run: the same purchases (other order numbers) as one CSV file through
  `python main.py import purchases FILE`'s code path (services.importer.import_file), rows/s;
- GET /api/v1/customers/{code} for random codes, one at a time: p50 / p99.
Targets (issue 16): >= 5,000 purchases/s in batches; single-customer read p99 <= 20 ms at 100k customers.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import random
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from sqlalchemy import text  # noqa: E402
from sqlalchemy.ext.asyncio import create_async_engine  # noqa: E402

from bot.api import create_api_app  # noqa: E402
from bot.db import make_engine, make_sessionmaker, upgrade  # noqa: E402
from bot.sandbox.server import serving  # noqa: E402
from services.importer import import_file, import_records  # noqa: E402
from services.tokens import create_token  # noqa: E402

SECRET = b"bench-secret"
DB = "fieldcrm_api_bench"


def percentile(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(p * len(values)))]


async def fresh_database(admin_url: str, template: str | None = None) -> tuple[str, bool]:
    """(URL of a fresh bench database, whether it was copied from `template` — which then exists)."""
    admin = create_async_engine(admin_url, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f"DROP DATABASE IF EXISTS {DB}"))
        copied = template is not None and bool(await conn.scalar(
            text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": template}))
        await conn.execute(text(f"CREATE DATABASE {DB}" + (f" TEMPLATE {template}" if copied else "")))
    await admin.dispose()
    return admin_url.rsplit("/", 1)[0] + "/" + DB, copied


async def keep_as_template(admin_url: str, template: str) -> None:
    admin = create_async_engine(admin_url, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f"DROP DATABASE IF EXISTS {template}"))
        await conn.execute(text(f"CREATE DATABASE {template} TEMPLATE {DB}"))
    await admin.dispose()


async def add_customers(sessions, count: int) -> None:
    started = time.perf_counter()
    for first in range(0, count, 5000):
        records = [{"external_id": f"C{n:07d}", "name": f"客户{n:07d}贸易有限公司", "phone": f"0591-{n % 10**8:08d}"}
                   for n in range(first, min(count, first + 5000))]
        async with sessions() as session, session.begin():
            report = await import_records(session, "customers", records, source={"bench": "api"})
            assert report.ok, report.errors[:3]
    print(f"{count:,} customers added in {time.perf_counter() - started:.0f} s", flush=True)


def purchases(count: int, customers: int, prefix: str, rng: random.Random) -> list[dict]:
    start = date(2024, 1, 1)
    return [{"customer_external_id": f"C{rng.randrange(customers):07d}", "order_no": f"{prefix}{n:08d}",
             "purchased_on": (start + timedelta(days=rng.randrange(1000))).isoformat(),
             "products": "A4 复印纸 x 10", "amount": f"{rng.randrange(100, 5_000_000) / 100:.2f}"}
            for n in range(count)]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--purchases", type=int, default=200_000)
    parser.add_argument("--reads", type=int, default=1000)
    parser.add_argument("--url", default="postgresql+asyncpg://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--keep-customers", action="store_true",
                        help="keep the customers in a template database and start from a copy next time")
    args = parser.parse_args()
    template = f"{DB}_{args.customers}" if args.keep_customers else None
    url, copied = await fresh_database(args.url, template)
    engine = make_engine(url)
    await upgrade(engine)
    sessions = make_sessionmaker(engine)
    if copied:
        print(f"{args.customers:,} customers copied from {template}", flush=True)
    else:
        await add_customers(sessions, args.customers)
        if template is not None:
            await engine.dispose()  # a template must have no connections
            await keep_as_template(args.url, template)
    async with sessions() as session:
        _row, token = await create_token(session, SECRET, "bench", scope="write")
        await session.commit()
    rng = random.Random(7)
    rows = purchases(args.purchases, args.customers, "API", rng)
    app = create_api_app(sessions, lambda: SECRET)
    headers = {"Authorization": f"Bearer {token}"}
    async with serving(app) as base, httpx.AsyncClient(base_url=base, timeout=600, headers=headers) as client:
        for label in ("new orders", "the same again (replay)"):
            started = time.perf_counter()
            each = []
            for first in range(0, len(rows), 5000):
                began = time.perf_counter()
                response = await client.post("/api/v1/purchases/batch", json={"records": rows[first:first + 5000]})
                assert response.status_code == 200, response.text[:500]
                each.append(time.perf_counter() - began)
            took = time.perf_counter() - started
            print(f"API batches of 5,000, {label}: {len(rows):,} purchases in {took:.1f} s = "
                  f"{len(rows) / took:,.0f} purchases/s (target >= 5,000); a batch: first {each[0]:.2f} s, "
                  f"median {percentile(each, 0.5):.2f} s, last {each[-1]:.2f} s, slowest {max(each):.2f} s", flush=True)
        codes = [f"C{rng.randrange(args.customers):07d}" for _ in range(args.reads)]
        for code in codes[:50]:
            await client.get(f"/api/v1/customers/{code}")
        times = []
        for code in codes:
            began = time.perf_counter()
            response = await client.get(f"/api/v1/customers/{code}")
            times.append((time.perf_counter() - began) * 1000)
            assert response.status_code == 200
        print(f"GET /api/v1/customers/{{code}}, {len(times)} one at a time: p50 {percentile(times, 0.5):.1f} ms, "
              f"p99 {percentile(times, 0.99):.1f} ms (target p99 <= 20 ms)", flush=True)
    baseline = purchases(args.purchases, args.customers, "CSV", random.Random(7))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "purchases.csv"
        with path.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(baseline[0]))
            writer.writeheader()
            writer.writerows(baseline)
        started = time.perf_counter()
        async with sessions() as session, session.begin():
            report = await import_file(session, "purchases", path)
        took = time.perf_counter() - started
    assert report.ok and report.created == len(baseline)
    print(f"baseline, the CLI import of the same rows as one CSV file: {len(baseline):,} purchases in {took:.1f} s = "
          f"{len(baseline) / took:,.0f} purchases/s", flush=True)
    await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main())
