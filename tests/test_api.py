"""The ERP sync API over real HTTP on 127.0.0.1 (uvicorn), on SQLite and PostgreSQL: an ERP job pushes
customers, contacts and purchases the way a file import would (same validation, same idempotent upsert),
reads them back, and is refused without a valid token or with a read-only one."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import func, select

from bot.api import create_api_app
from bot.db import make_sessionmaker
from bot.sandbox.server import serving
from models import AuditLog, ContactPerson, Customer, Purchase
from services.lookup import build_index
from services.tokens import create_token, revoke_token
from services.users import add_user

SECRET = b"test-secret"


class Api:
    def __init__(self, client: httpx.AsyncClient, sessions, tokens: dict[str, str], rep_id: int) -> None:
        self.client, self.sessions, self.tokens, self.rep_id = client, sessions, tokens, rep_id

    def auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    async def post(self, path: str, json, who: str = "writer", **params) -> httpx.Response:
        return await self.client.post(path, json=json, headers=self.auth(who), params=params)

    async def get(self, path: str, who: str = "reader", **params) -> httpx.Response:
        return await self.client.get(path, headers=self.auth(who), params=params)

    async def count(self, model, *where) -> int:
        async with self.sessions() as session:
            return await session.scalar(select(func.count()).select_from(model).where(*where))


@pytest.fixture
async def api(engine):
    sessions = make_sessionmaker(engine)
    async with sessions() as session:
        rep = await add_user(session, name="李明", telegram_id=7001, language="zh_Hans")
        other = await add_user(session, name="Wang", telegram_id=7002, language="en")
        tokens = {}
        for name, scope, user in (("writer", "write", None), ("reader", "read", None), ("rep", "read", rep.id),
                                  ("gone", "write", None)):
            _row, tokens[name] = await create_token(session, SECRET, f"erp-{name}", scope=scope, user_id=user)
        await revoke_token(session, "erp-gone")
        await session.commit()
        index = await build_index(session)
    app = create_api_app(sessions, lambda: SECRET, index=index)
    async with serving(app) as url, httpx.AsyncClient(base_url=url, timeout=30) as client:
        handle = Api(client, sessions, tokens, rep.id)
        handle.other_id, handle.index = other.id, index
        yield handle


CUSTOMER = {"external_id": "C-1001", "name": "广州市人易软件技术有限公司", "short_name": "人易软件",
            "phone": "020-8888 1234", "owner": "李明"}


async def test_without_a_valid_token_nothing_is_read_or_written(api):
    for headers in ({}, {"Authorization": "Bearer nonsense"}, {"Authorization": "Bearer fcrm_1_" + "x" * 43},
                    api.auth("gone")):
        response = await api.client.post("/api/v1/customers", json=CUSTOMER, headers=headers)
        assert response.status_code == 401, headers
        assert "token" in response.json()["error"] and response.headers["www-authenticate"] == "Bearer"
        assert (await api.client.get("/api/v1/customers/C-1001", headers=headers)).status_code == 401
    refused = await api.post("/api/v1/customers", CUSTOMER, who="reader")
    assert refused.status_code == 403 and "only read" in refused.json()["error"]
    assert await api.count(Customer) == 0


async def test_an_erp_job_creates_updates_and_replays_customers_and_reads_them_back(api):
    created = await api.post("/api/v1/customers", CUSTOMER)
    assert created.status_code == 200, created.text
    assert created.json() == {"applied": True, "rows": 1, "created": 1, "updated": 0, "unchanged": 0}
    again = await api.post("/api/v1/customers", CUSTOMER)
    assert again.json()["unchanged"] == 1 and await api.count(Customer) == 1  # replay: idempotent
    changed = await api.post("/api/v1/customers", {**CUSTOMER, "phone": "020-8888 9999"})
    assert changed.json()["updated"] == 1
    card = (await api.get("/api/v1/customers/C-1001")).json()
    assert card["name"] == CUSTOMER["name"] and card["phone"] == "020-8888 9999" and card["owner"] == "李明"
    assert (await api.get("/api/v1/customers/C-9999")).status_code == 404
    async with api.sessions() as session:
        entries = (await session.execute(select(AuditLog).where(AuditLog.action == "import"))).scalars().all()
    assert [e.actor for e in entries] == ["api"] * 3 and all(e.changes["token"] == "erp-writer" for e in entries)
    # The lookup as in chat, and a token tied to a rep sees the rep's customers only.
    found = (await api.get("/api/v1/customers", q="人易")).json()
    assert [f["external_id"] for f in found] == ["C-1001"]
    assert (await api.get("/api/v1/customers", who="rep", q="人易")).json()[0]["external_id"] == "C-1001"
    await api.post("/api/v1/customers", {"external_id": "C-2002", "name": "深圳华为技术有限公司", "owner": "Wang"})
    assert (await api.get("/api/v1/customers", q="华为")).json()[0]["external_id"] == "C-2002"
    assert (await api.get("/api/v1/customers", who="rep", q="华为")).json() == []
    assert (await api.get("/api/v1/customers/C-2002", who="rep")).status_code == 404


async def test_a_batch_with_one_bad_row_changes_nothing_and_says_which_row_and_field(api):
    await api.post("/api/v1/customers", CUSTOMER)
    rows = [{"customer_external_id": "C-1001", "order_no": "SO-1", "purchased_on": "2026-11-02", "amount": "12800.50"},
            {"customer_external_id": "C-1001", "order_no": "SO-2", "purchased_on": "2026-11-09", "amount": "12800,50"},
            {"customer_external_id": "C-404", "order_no": "SO-3", "purchased_on": "2026-11-16", "amount": "99"},
            {"customer_external_id": "C-1001", "order_no": "SO-4", "purchased_on": "2026-13-01", "amount": "1"}]
    refused = await api.post("/api/v1/purchases/batch", {"records": rows})
    assert refused.status_code == 422
    body = refused.json()
    where = {(e["row"], e["field"]) for e in body["errors"]}
    assert body["error_count"] == 3 and (2, "amount") in where and (4, "purchased_on") in where
    assert any(e["row"] == 3 for e in body["errors"])
    assert "two ways" in next(e["problem"] for e in body["errors"] if e["row"] == 2)
    assert await api.count(Purchase) == 0  # all or nothing
    # The same refusal in Chinese for a Chinese-speaking ERP team.
    zh = await api.client.post("/api/v1/purchases/batch", json={"records": rows},
                               headers={**api.auth("writer"), "Accept-Language": "zh-CN"})
    assert zh.status_code == 422 and any("\u4e00" <= ch <= "\u9fff" for ch in zh.json()["errors"][0]["problem"])
    good = [rows[0], {**rows[1], "amount": "12,800.50"}, {**rows[3], "purchased_on": "2026-11-23"}]
    dry = await api.post("/api/v1/purchases/batch", {"records": good}, dry_run="true")
    assert dry.json()["applied"] is False and await api.count(Purchase) == 0
    applied = await api.post("/api/v1/purchases/batch", {"records": good})
    assert applied.json()["created"] == 3
    assert (await api.post("/api/v1/purchases/batch", {"records": good})).json()["unchanged"] == 3
    assert await api.count(Purchase) == 3 and await api.count(Purchase, Purchase.source == "api") == 3
    history = (await api.get("/api/v1/customers/C-1001/purchases")).json()
    assert [p["order_no"] for p in history] == ["SO-4", "SO-2", "SO-1"] and history[1]["amount"] == "12800.50"
    card = (await api.get("/api/v1/customers/C-1001")).json()
    assert card["txn_count"] == 3 and card["txn_amount"] == "25602.00" and card["last_txn_on"] == "2026-11-23"


async def test_contacts_unknown_fields_and_oversized_batches_are_refused_clearly(api):
    await api.post("/api/v1/customers", CUSTOMER)
    typo = await api.post("/api/v1/contacts", {"customer_external_id": "C-1001", "name": "王芳", "mobil": "13800138000"})
    assert typo.status_code == 422 and typo.json()["errors"][0]["field"] == "mobil"
    assert "no such field" in typo.json()["errors"][0]["problem"]
    made = await api.post("/api/v1/contacts", {"customer_external_id": "C-1001", "name": "王芳", "mobile": "13800138000"})
    assert made.json()["created"] == 1 and await api.count(ContactPerson) == 1
    too_many = await api.post("/api/v1/customers/batch",
                              {"records": [{"name": f"客户{n}"} for n in range(5001)]})
    assert too_many.status_code == 422 and await api.count(Customer) == 1
    assert (await api.post("/api/v1/customers", ["not", "an", "object"])).status_code == 422


async def test_reminders_due_and_the_docs(api):
    due = await api.get("/api/v1/reminders/due")
    assert due.status_code == 200 and isinstance(due.json(), list)
    mine = await api.get("/api/v1/reminders/due", who="rep")
    assert mine.status_code == 200
    assert (await api.get("/api/v1/reminders/due", who="rep", user_id=api.other_id)).status_code == 403
    docs = await api.client.get("/api/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    spec = (await api.client.get("/api/openapi.json")).json()
    assert {"/api/v1/customers", "/api/v1/purchases/batch", "/api/v1/customers/{external_id}/purchases",
            "/api/v1/reminders/due"} <= set(spec["paths"])


async def test_run_role_api_serves_the_api_from_its_own_process(db_url, tmp_path):
    """`python main.py run --role api` as an operator starts it: no bot token needed; a token made with the
    CLI works against it; /healthz names the role; SIGTERM stops it."""
    import asyncio
    import os
    import signal
    import socket
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "DATABASE_URL": db_url, "DATA_DIR": str(tmp_path / "data"), "HTTP_PORT": str(port),
           "FIELDCRM_NO_BOOTSTRAP": "1", "API_SECRET": "role-api-secret", "DEFAULT_LANGUAGE": "en"}
    env.pop("BOT_TOKEN", None)
    made = subprocess.run([sys.executable, "main.py", "token", "create", "erp", "--scope", "write"], cwd=root,
                          env=env, capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip().splitlines()[-1]
    process = subprocess.Popen([sys.executable, "main.py", "run", "--role", "api"], cwd=root, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            health, deadline = None, asyncio.get_running_loop().time() + 120  # a start on a busy machine
            while health is None and asyncio.get_running_loop().time() < deadline:
                try:
                    health = await client.get("/healthz")
                except httpx.TransportError:
                    assert process.poll() is None, process.stdout.read()
                    await asyncio.sleep(0.1)
            assert health is not None, "run --role api did not answer within 120 s"
            assert health.json()["role"] == "api" and health.json()["database"] == "ok"
            created = await client.post("/api/v1/customers", json=CUSTOMER | {"owner": None},
                                        headers={"Authorization": f"Bearer {token}"})
            assert created.status_code == 200 and created.json()["created"] == 1
            found = await client.get("/api/v1/customers", params={"q": "人易软件"},
                                     headers={"Authorization": f"Bearer {token}"})
            assert found.json()[0]["external_id"] == "C-1001"  # its own index follows its own writes
    finally:
        process.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(process.wait, 30) == 0


async def test_simultaneous_erp_batches_for_one_customer_all_count_in_its_totals(api):
    """Several ERP jobs (or one job's parallel requests) push orders for the same customer at the same moment:
    every order counts in the customer's purchase count and amount — none is lost to another request's
    roll-up written over it (seen on PostgreSQL: two requests read the same count and each added its own)."""
    import asyncio

    assert (await api.post("/api/v1/customers", CUSTOMER)).status_code in (200, 201)

    def batch(n: int) -> list[dict]:
        return [{"customer_external_id": "C-1001", "order_no": f"SO-{n}-{i}", "purchased_on": f"2026-11-{1 + n:02d}",
                 "amount": "100.25"} for i in range(3)]

    answers = await asyncio.gather(*(api.post("/api/v1/purchases/batch", {"records": batch(n)}) for n in range(12)))
    assert [a.status_code for a in answers] == [200] * 12, [a.text for a in answers if a.status_code != 200]
    assert await api.count(Purchase) == 36
    card = (await api.get("/api/v1/customers/C-1001")).json()
    assert card["txn_count"] == 36 and card["txn_amount"] == "3609.00"
    assert card["first_txn_on"] == "2026-11-01" and card["last_txn_on"] == "2026-11-12"
    # … and corrections at the same moment (each customer recomputed from its rows): the same.
    def corrected(n: int) -> list[dict]:
        return [{**row, "amount": "200.50"} for row in batch(n)]

    answers = await asyncio.gather(*(api.post("/api/v1/purchases/batch", {"records": corrected(n)})
                                     for n in range(12)))
    assert [a.json().get("updated") for a in answers] == [3] * 12, [a.text for a in answers]
    card = (await api.get("/api/v1/customers/C-1001")).json()
    assert card["txn_count"] == 36 and card["txn_amount"] == "7218.00"


async def test_simultaneous_customer_batches_in_different_orders_all_apply(api):
    """Two ERP jobs update the same customers at the same moment, one in code order, the other backwards
    (as two systems export them): both are applied, neither is refused (on PostgreSQL, rows updated in
    opposite orders by two transactions used to be able to wait on each other until one was aborted)."""
    import asyncio

    base = [{"external_id": f"C-{n:04d}", "name": f"顺序测试客户{n:04d}有限公司", "owner": "李明"} for n in range(150)]
    made = await api.post("/api/v1/customers/batch", {"records": base})
    assert made.status_code == 200, made.text

    def edited(tag: str, reverse: bool) -> list[dict]:
        rows = [{**row, "phone": f"0591-{tag}{n:03d}"} for n, row in enumerate(base)]
        return rows[::-1] if reverse else rows

    for round_ in range(3):
        answers = await asyncio.gather(*(api.post("/api/v1/customers/batch",
                                                  {"records": edited(f"{round_}{job}", reverse=job % 2 == 1)})
                                         for job in range(4)))
        assert [a.status_code for a in answers] == [200] * 4, [a.text[:300] for a in answers]
    async with api.sessions() as session:
        phones = (await session.execute(select(Customer.phone).where(Customer.external_id.like("C-0%")))).scalars().all()
    assert len(phones) == 150 and all(p and p.startswith("0591-2") for p in phones)


async def test_two_big_customer_batches_in_opposite_orders_both_apply(api):
    """The same with batches of 4,500 records, which the importer writes in parts of 2,000 within one
    transaction: the locks are in order within a part only, so PostgreSQL may still abort one request to let
    the other go on — the API then does it again, and both jobs get their answer."""
    import asyncio

    base = [{"external_id": f"B-{n:05d}", "name": f"大批量测试客户{n:05d}有限公司", "owner": "李明"} for n in range(4500)]
    assert (await api.post("/api/v1/customers/batch", {"records": base})).status_code == 200

    for round_ in range(2):
        jobs = [[{**row, "phone": f"0591-{round_}{job}{n:05d}"} for n, row in enumerate(base)] for job in range(2)]
        jobs[1].reverse()
        answers = await asyncio.gather(*(api.post("/api/v1/customers/batch", {"records": rows}) for rows in jobs))
        assert [a.status_code for a in answers] == [200, 200], [a.text[:300] for a in answers]
        assert all(a.json()["updated"] == 4500 for a in answers)
    async with api.sessions() as session:
        phones = (await session.execute(select(Customer.phone).where(Customer.external_id.like("B-%")))).scalars().all()
    assert len(phones) == 4500 and all(p.startswith("0591-1") for p in phones)
