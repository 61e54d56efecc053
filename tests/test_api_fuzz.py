"""Schemathesis (a property-based OpenAPI fuzzer we did not write) against the real API over HTTP on
127.0.0.1: for every operation of /api/openapi.json, generated requests — valid and invalid bodies, odd
paths and parameters — with a write token. None may answer 5xx, and what the API says it returns must
match its schema. Bounded: 25 examples per operation."""

from __future__ import annotations

import asyncio

import schemathesis
from hypothesis import HealthCheck, given, settings

from bot.api import create_api_app
from bot.db import make_sessionmaker
from bot.sandbox.server import serving
from services.lookup import build_index
from services.tokens import create_token
from services.users import add_user

SECRET = b"fuzz-secret"


async def test_no_operation_answers_5xx_to_generated_requests(engine):
    sessions = make_sessionmaker(engine)
    async with sessions() as session:
        await add_user(session, name="李明", telegram_id=7001)
        _row, token = await create_token(session, SECRET, "fuzz", scope="write")
        await session.commit()
        index = await build_index(session)
    app = create_api_app(sessions, lambda: SECRET, index=index)
    schema = schemathesis.openapi.from_dict(app.openapi())
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10
    failures: list[str] = []

    async with serving(app) as url:
        def fuzz(operation) -> int:
            calls = 0

            @settings(max_examples=25, deadline=None, database=None, derandomize=True,
                      suppress_health_check=list(HealthCheck))
            @given(case=operation.as_strategy())
            def one(case) -> None:
                nonlocal calls
                calls += 1
                response = case.call(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
                if response.status_code >= 500:
                    failures.append(f"{case.method} {case.formatted_path} {case.body!r:.200} → "
                                    f"{response.status_code} {response.text[:200]}")

            one()
            return calls

        for operation in operations:
            assert await asyncio.to_thread(fuzz, operation) > 0
    assert failures == []
