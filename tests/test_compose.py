"""Issue 16: compose.yaml's three FieldCRM services, run as `docker compose up` would run them.

No Docker engine runs on the development or CI machines, so the containers cannot be started here. What
this test runs instead is what each container would: the service's `command` from compose.yaml, with the
environment compose.yaml gives it (anchors and `${VAR:-default}` / `${VAR:?message}` resolved as compose
does) on top of the Dockerfile's `ENV`, all started at once on an EMPTY PostgreSQL database — so the
worker must migrate it while the bot and the API wait for the schema — with compose's own containers
replaced by this machine's PostgreSQL and Redis (host names `postgres` and `redis` → 127.0.0.1) and
Telegram by the Bot API stand-in. Each service gets its own HTTP port (in compose each container has its
own network namespace). What this cannot check: the image build and compose's own parsing.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import make_url

from bot.sandbox.app import Controls, Persona, create_app
from bot.sandbox.server import serving
from bot.sandbox.telegram import BotApi
from tests.conftest import PG_URL, REDIS_URL, _pg_admin, require_postgres, require_redis
from tests.test_webhook import free_port

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "777002:compose"
ADMIN = 5301
pytestmark = [pytest.mark.postgres, pytest.mark.redis]


def _interpolate(value: str, given: dict[str, str]) -> str:
    """Compose's `${VAR}`, `${VAR:-default}` and `${VAR:?message}` (an unset required one is an error)."""
    def one(match: re.Match) -> str:
        name, op, rest = match.group(1), match.group(2), match.group(3) or ""
        if given.get(name):
            return given[name]
        if op == ":?":
            raise AssertionError(f"compose would refuse to start: {rest}")
        return rest if op == ":-" else ""
    return re.sub(r"\$\{(\w+)(:[-?])?([^}]*)\}", one, str(value))


def _dockerfile_env() -> dict[str, str]:
    text = (ROOT / "Dockerfile").read_text()
    [line] = [line for line in text.splitlines() if line.startswith("ENV ")]
    return dict(pair.split("=", 1) for pair in line[4:].split())


def _services(given: dict[str, str]) -> dict[str, tuple[list[str], dict[str, str]]]:
    import yaml

    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = {}
    for name in ("worker", "bot", "api"):
        service = compose["services"][name]
        env = {**_dockerfile_env(), **{k: _interpolate(v, given) for k, v in service["environment"].items()}}
        services[name] = (service["command"], env)
    return services


def test_compose_refuses_to_start_without_a_bot_token_or_api_secret():
    with pytest.raises(AssertionError, match="set BOT_TOKEN"):
        _services({"API_SECRET": "x"})
    with pytest.raises(AssertionError, match="set API_SECRET"):
        _services({"BOT_TOKEN": TOKEN})


async def test_the_compose_services_start_together_on_an_empty_database_and_work(tmp_path):
    require_postgres()
    require_redis()
    import redis.asyncio as aioredis

    services = _services({"BOT_TOKEN": TOKEN, "API_SECRET": "compose-secret", "ADMIN_IDS": str(ADMIN),
                          "DEFAULT_LANGUAGE": "en"})
    database = f"fieldcrm_compose_{uuid.uuid4().hex[:8]}"
    await _pg_admin(f'CREATE DATABASE "{database}"')  # empty: the worker migrates it
    ours = make_url(PG_URL)
    client = aioredis.from_url(REDIS_URL)
    await client.flushdb()
    api = BotApi(TOKEN)
    processes: dict[str, subprocess.Popen] = {}
    ports = {name: free_port() for name in services}
    try:
        async with serving(create_app(api, Controls(personas=[Persona(ADMIN, "Ada", "admin", "en")]))) as api_url:
            for name, (command, env) in services.items():
                theirs = make_url(env["DATABASE_URL"])
                assert theirs.host == "postgres" and env["REDIS_URL"].startswith("redis://redis:")
                env.update(DATABASE_URL=theirs.set(host=ours.host, port=ours.port, username=ours.username,
                                                   password=ours.password, database=database)
                           .render_as_string(hide_password=False),
                           REDIS_URL=REDIS_URL, BOT_API_URL=api_url, HTTP_HOST="127.0.0.1",
                           HTTP_PORT=str(ports[name]), DATA_DIR=str(tmp_path / name), PYTHONUNBUFFERED="1")
                assert command[:2] == ["python", "main.py"]
                processes[name] = subprocess.Popen(
                    [sys.executable, str(ROOT / "main.py"), *command[2:]], cwd=tmp_path,
                    env={"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), **env},
                    stdout=(tmp_path / f"{name}.log").open("w"), stderr=subprocess.STDOUT)

            def logs() -> str:
                return "\n".join(f"--- {n}\n" + (tmp_path / f"{n}.log").read_text()[-2000:] for n in services)

            async with httpx.AsyncClient(timeout=5) as http:
                health: dict[str, dict] = {}
                deadline = time.monotonic() + 150
                while len(health) < 3 and time.monotonic() < deadline:
                    for name in services:
                        assert processes[name].poll() is None, logs()
                        if name in health:
                            continue
                        try:
                            answer = await http.get(f"http://127.0.0.1:{ports[name]}/healthz")
                        except httpx.TransportError:
                            continue
                        if answer.status_code == 200:
                            health[name] = answer.json()
                    await asyncio.sleep(0.3)
                assert len(health) == 3, logs()
                assert {name: h["role"] for name, h in health.items()} == {n: n for n in services}
                assert all(h["database"] == "ok" for h in health.values()), health

            # The admin (ADMIN_IDS) talks to the bot service through "Telegram".
            await api.user_message(ADMIN, text="/start")
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not [
                    m for m in api.chats[ADMIN].messages.values() if m["from"].get("is_bot")]:
                await asyncio.sleep(0.2)
            replies = [m for m in api.chats[ADMIN].messages.values() if m["from"].get("is_bot")]
            assert replies, logs()
            migrated = "".join((tmp_path / f"{n}.log").read_text() for n in ("bot", "api"))
            assert "Traceback" not in migrated, logs()

            for process in processes.values():
                process.terminate()
            codes = {name: await asyncio.to_thread(process.wait, 60) for name, process in processes.items()}
            assert codes == {"worker": 0, "bot": 0, "api": 0}, logs()
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
        await client.flushdb()
        await client.aclose()
        await _pg_admin(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
