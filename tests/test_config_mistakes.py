"""Start with every setting wrong once: each mistake is one clear, localized line naming the setting, exit 2,
and nothing is written (no database file, no demo data) before the mistake is found."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_cli(tmp_path: Path, env_file: str, *args: str, extra_env: dict | None = None) -> subprocess.CompletedProcess:
    (tmp_path / ".env").write_text(env_file, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.isupper() or k in ("PATH", "HOME", "LANG", "TMPDIR")}
    env.update({"FIELDCRM_NO_BOOTSTRAP": "1", **(extra_env or {})})
    return subprocess.run([sys.executable, str(ROOT / "main.py"), *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)


def one_line_error(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.parametrize("line, setting, words", [
    ("DEFAULT_TIMEZONE=Mars/Olympus", "DEFAULT_TIMEZONE", "Mars/Olympus"),
    ("HTTP_PORT=eighty", "HTTP_PORT", "eighty"),
    ("HTTP_PORT=99999", "HTTP_PORT", "99999"),
    ("ADMIN_IDS=12345,alice", "ADMIN_IDS", "alice"),
    ("DEFAULT_LANGUAGE=fr", "DEFAULT_LANGUAGE", "fr"),
    ("BOT_TOKEN=not a token", "BOT_TOKEN", "@BotFather"),
    ("REPS_SEE_UNASSIGNED=perhaps", "REPS_SEE_UNASSIGNED", "perhaps"),
    ("LOG_LEVEL=LOUD", "LOG_LEVEL", "LOUD"),
    ("SANDBOX_START=2026-11-29T09:00", "SANDBOX_START", "2026-11-29T09:00"),
    ("DATABASE_URL=mysql+nosuchdriver://x@y/z", "DATABASE_URL", "postgresql://"),
    ("DATABASE_URL=postgresql://nobody@127.0.0.1:1/crm", "DATABASE_URL", "cannot be reached"),
])
def test_a_wrong_setting_is_one_line_naming_it_and_nothing_is_written(tmp_path, line, setting, words):
    result = run_cli(tmp_path, f"DEFAULT_LANGUAGE=en\nDATA_DIR={tmp_path / 'data'}\n{line}\n"
                     if not line.startswith("DEFAULT_LANGUAGE") else f"DATA_DIR={tmp_path / 'data'}\n{line}\n")
    message = one_line_error(result)
    assert setting in message and words in message
    assert not list((tmp_path / "data").glob("*.sqlite3")), "nothing may be written before the check"
    assert "BOT_TOKEN=not a token" not in result.stderr  # a secret is never echoed


def test_the_message_speaks_the_configured_language(tmp_path):
    result = run_cli(tmp_path, "DEFAULT_LANGUAGE=zh_Hant\nDEFAULT_TIMEZONE=Mars/Olympus\n")
    message = one_line_error(result)
    assert "DEFAULT_TIMEZONE" in message and "時區" in message


def test_an_unwritable_data_dir_is_named(tmp_path):
    blocker = tmp_path / "file-not-folder"
    blocker.write_text("x")
    result = run_cli(tmp_path, f"DEFAULT_LANGUAGE=en\nDATA_DIR={blocker / 'data'}\n")
    message = one_line_error(result)
    assert "DATA_DIR" in message and str(blocker) in message


def test_a_port_in_use_is_found_before_demo_data_is_written(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli(tmp_path, f"DEFAULT_LANGUAGE=en\nDATA_DIR={tmp_path / 'data'}\nHTTP_PORT={port}\n")
    message = one_line_error(result)
    assert "HTTP_PORT" in message and str(port) in message
    assert not list((tmp_path / "data").glob("*.sqlite3"))


def test_an_empty_bot_token_line_means_the_sandbox(tmp_path):
    """`BOT_TOKEN=` is the usual template line: it must mean "not set", not crash."""
    from bot.settings import Settings

    (tmp_path / ".env").write_text("BOT_TOKEN=\nWEBHOOK_URL=\nDATABASE_URL= \n")
    settings = Settings(_env_file=tmp_path / ".env")
    assert settings.bot_token is None and settings.webhook_url is None and settings.database_url is None


def test_a_token_telegram_refuses_is_one_line(tmp_path):
    """A well-formed token that Telegram answers 401 for (a local Bot API server stands in for Telegram)."""
    import asyncio
    import threading

    from aiohttp import web

    async def unauthorized(request):
        return web.json_response({"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401)

    ready, port = threading.Event(), []

    def serve() -> None:
        async def main() -> None:
            app = web.Application()
            app.router.add_route("*", "/{tail:.*}", unauthorized)
            runner = web.AppRunner(app)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port.append(site._server.sockets[0].getsockname()[1])
            ready.set()
            await asyncio.sleep(30)
        asyncio.run(main())

    threading.Thread(target=serve, daemon=True).start()
    assert ready.wait(10)
    result = run_cli(tmp_path, f"DEFAULT_LANGUAGE=en\nDATA_DIR={tmp_path / 'data'}\nBOT_TOKEN=123456:wrong-but-well-formed\n"
                     f"BOT_API_URL=http://127.0.0.1:{port[0]}\n")
    message = one_line_error(result)
    assert "BOT_TOKEN" in message and "401" in message
    assert not list((tmp_path / "data").glob("*.sqlite3"))


def test_a_worker_or_bot_started_without_redis_is_told_its_limits_are_its_own(tmp_path, capsys):
    """Several processes without REDIS_URL would each keep Telegram's limits alone (together they can exceed
    them): `run --role worker` or `--role bot` without it starts, with a warning naming REDIS_URL."""
    from bot.cli import _preflight
    from bot.settings import Settings

    with socket.socket() as probe:  # role bot without a token serves the sandbox: a free port for it
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    alone = Settings(_env_file=None, data_dir=tmp_path / "data", bot_token=None, database_url=None, redis_url=None,
                     http_port=port)
    for role in ("worker", "bot"):
        assert _preflight(alone, "run", role) == []  # a warning, not a refusal
        warning = capsys.readouterr().err
        assert "REDIS_URL" in warning and f"this {role} process" in warning and "role all" in warning
    assert _preflight(alone, "run", "all") == [] and capsys.readouterr().err == ""  # one process: nothing to share
    shared = Settings(_env_file=None, data_dir=tmp_path / "data", bot_token=None, database_url=None,
                      redis_url="redis://127.0.0.1:6379/0")
    assert _preflight(shared, "run", "worker") == [] and capsys.readouterr().err == ""
    assert _preflight(alone, "user", "admin") == [] and capsys.readouterr().err == ""  # `user add --role admin`
