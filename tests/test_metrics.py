"""What an operator's Prometheus scrapes from /metrics (prometheus-client's text format): updates by handler
and outcome with latency, Bot API calls with 429s, the outbox's depth and oldest message, API requests by
route and status — each moving when the thing it counts happens."""

from __future__ import annotations

import httpx
from aiogram.exceptions import TelegramRetryAfter
from aiogram.methods import SendMessage
from prometheus_client.parser import text_string_to_metric_families

from bot.db import make_sessionmaker
from bot.sandbox.server import serving
from bot.web import create_web_app
from services import outbox
from services.tokens import create_token
from services.users import add_user
from tests.botkit import make_app, person, text_update

SECRET = b"metrics-secret"


def samples(text: str) -> dict[tuple[str, tuple], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(found: dict, name: str, **labels) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


async def scrape(client: httpx.AsyncClient) -> dict:
    response = await client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    return samples(response.text)


async def test_metrics_move_with_updates_api_calls_and_the_outbox(engine):
    app = await make_app(engine)
    async with app.sessions() as session:
        await add_user(session, name="Lee", telegram_id=7301, language="en")
        _row, token = await create_token(session, SECRET, "erp", scope="write")
        await session.commit()
    web = create_web_app(None, None, app.sessions, api_key=lambda: SECRET, index=app.index, role="bot")
    async with serving(web) as url, httpx.AsyncClient(base_url=url, timeout=30) as client:
        before = await scrape(client)
        await app.send(text_update(person(7301, language="en"), "no such customer"))
        original, left = app.recorder.make_request, {"n": 1}

        async def flooded(bot, method, timeout=None):
            if isinstance(method, SendMessage) and left["n"]:
                left["n"] -= 1
                raise TelegramRetryAfter(method=method, message="Too Many Requests", retry_after=1)
            return await original(bot, method, timeout)

        app.recorder.make_request = flooded
        await app.send(text_update(person(7301, language="en"), "still nothing"))
        await client.post("/api/v1/customers", json={"name": "人易软件"}, headers={"Authorization": f"Bearer {token}"})
        await client.post("/api/v1/customers", json={"name": "x"})
        async with make_sessionmaker(engine)() as session, session.begin():
            await outbox.enqueue(session, key="m1", chat_id=7301, kind="notice", text="hello")
        after = await scrape(client)
        health = (await client.get("/healthz")).json()
    handler = "handlers.find.find_text"
    assert value(after, "fieldcrm_updates_total", handler=handler, outcome="handled") \
        - value(before, "fieldcrm_updates_total", handler=handler, outcome="handled") == 2
    assert value(after, "fieldcrm_handler_seconds_count", handler=handler) \
        - value(before, "fieldcrm_handler_seconds_count", handler=handler) == 2
    assert value(after, "fieldcrm_telegram_requests_total", method="SendMessage", outcome="flood") \
        - value(before, "fieldcrm_telegram_requests_total", method="SendMessage", outcome="flood") == 1
    assert value(after, "fieldcrm_telegram_requests_total", method="SendMessage", outcome="ok") \
        - value(before, "fieldcrm_telegram_requests_total", method="SendMessage", outcome="ok") == 2
    assert value(after, "fieldcrm_api_requests_total", route="/api/v1/customers", method="POST", status="200") \
        - value(before, "fieldcrm_api_requests_total", route="/api/v1/customers", method="POST", status="200") == 1
    assert value(after, "fieldcrm_api_requests_total", route="/api/v1/customers", method="POST", status="401") \
        - value(before, "fieldcrm_api_requests_total", route="/api/v1/customers", method="POST", status="401") == 1
    assert value(after, "fieldcrm_outbox_pending") == 1
    assert value(after, "fieldcrm_outbox_oldest_pending_seconds") >= 0
    assert health["ok"] is True and health["role"] == "bot" and health["database"] == "ok"


async def test_job_runs_and_durations_are_counted_from_the_schedulers_events():
    import asyncio
    from datetime import UTC, datetime

    from apscheduler.schedulers.asyncio import AsyncIOScheduler

    from bot.metrics import REGISTRY, job_listener

    done = asyncio.Event()

    async def work() -> None:
        await asyncio.sleep(0.05)
        done.set()

    async def broken() -> None:
        raise RuntimeError("the database went away")

    scheduler = AsyncIOScheduler(timezone="UTC")
    job_listener(scheduler)
    scheduler.add_job(work, id="test.work", next_run_time=datetime.now(UTC))
    scheduler.add_job(broken, id="test.broken", next_run_time=datetime.now(UTC))
    scheduler.start()
    await asyncio.wait_for(done.wait(), 5)
    await asyncio.sleep(0.2)
    scheduler.shutdown(wait=False)
    assert REGISTRY.get_sample_value("fieldcrm_job_runs_total", {"job": "test.work", "outcome": "ok"}) == 1
    assert REGISTRY.get_sample_value("fieldcrm_job_runs_total", {"job": "test.broken", "outcome": "error"}) == 1
    assert REGISTRY.get_sample_value("fieldcrm_job_seconds_sum", {"job": "test.work"}) >= 0.05


async def test_json_logs_carry_the_update_and_the_request_they_happened_in(engine, capsys):
    import io
    import json
    import logging

    from bot.logs import configure

    stream = io.StringIO()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    configure("INFO", "json", stream)
    try:
        app = await make_app(engine)
        async with app.sessions() as session:
            await add_user(session, name="Lee", telegram_id=7301, language="en")
            await session.commit()
        update = text_update(person(7301, language="en"), "no such customer")
        await app.send(update)
        await app.send(update)  # Telegram delivering it again: skipped, and the log line says which update
        web = create_web_app(None, None, app.sessions, role="api")
        async with serving(web) as url, httpx.AsyncClient(base_url=url) as client:
            answer = await client.get("/healthz", headers={"X-Request-ID": "req-42"})
        assert answer.headers["x-request-id"] == "req-42"
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    skipped = [entry for entry in lines if "handled before" in entry["message"]]
    assert skipped and skipped[0]["update_id"] == update.update_id and skipped[0]["level"] == "INFO"
    assert all({"time", "level", "logger", "message"} <= set(entry) for entry in lines)
