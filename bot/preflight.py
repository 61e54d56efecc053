"""Settings checked before anything is written (README, "Configuration").

Each mistake becomes one localized line that names the setting and says what to do; the CLI prints
them and exits with code 2. Two layers:

- `describe(ValidationError)`: values that cannot be read at all (a port that is not a number, an
  unknown time zone, a malformed token, ADMIN_IDS with a name in it);
- `check(settings, …)`: values that read fine but do not work on this machine (DATA_DIR not writable,
  the database unreachable, HTTP_PORT taken, Telegram refusing the token) — run before the schema is
  upgraded or demo data is written.
"""

from __future__ import annotations

import asyncio
import os
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path

from pydantic import ValidationError

from bot.settings import LANGUAGES, Settings
from services.messages import N_, Problem

# What each setting must look like, for the values pydantic cannot read.
SHAPES = {
    "bot_token": N_("BOT_TOKEN is not a Telegram bot token: it looks like 123456789:AAE…, as @BotFather gives it."),
    "admin_ids": N_("ADMIN_IDS must be Telegram ids (numbers) separated by commas, not “{value}”."),
    "default_language": N_("DEFAULT_LANGUAGE must be zh_Hans, zh_Hant or en, not “{value}”."),
    "default_timezone": N_("DEFAULT_TIMEZONE “{value}” is not a known time zone: use an IANA name such as "
                           "Asia/Shanghai or Asia/Taipei."),
    "http_port": N_("HTTP_PORT must be a port number from 1 to 65535, not “{value}”."),
    "reps_see_unassigned": N_("REPS_SEE_UNASSIGNED must be true or false, not “{value}”."),
    "log_level": N_("LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, not “{value}”."),
    "sandbox_start": N_("SANDBOX_START must be a date and time with its UTC offset, such as "
                        "2026-11-29T09:00+08:00, not “{value}”."),
}
OTHER = N_("{name} cannot be used as “{value}”: {reason}")


def _shown(value: object) -> str:
    text = str(value)
    return text if len(text) <= 60 else text[:57] + "…"


def describe(error: ValidationError) -> list[Problem]:
    """One problem per setting pydantic refused (secrets are never echoed)."""
    problems, seen = [], set()
    for item in error.errors():
        field = str(item["loc"][0]) if item["loc"] else ""
        if field in seen:
            continue
        seen.add(field)
        value = "…" if "token" in field or "secret" in field else _shown(item.get("input", ""))
        if field in SHAPES:
            problems.append(Problem(SHAPES[field], {"value": value}))
        else:
            problems.append(Problem(OTHER, {"name": field.upper(), "value": value, "reason": item.get("msg", "")}))
    return problems


def language_hint(env_file: Path = Path(".env")) -> str:
    """The language to explain a broken configuration in: DEFAULT_LANGUAGE if it is usable, else zh_Hans."""
    value = os.environ.get("DEFAULT_LANGUAGE")
    if value is None and env_file.is_file():
        for line in env_file.read_text(encoding="utf-8", errors="replace").splitlines():
            name, _, rest = line.partition("=")
            if name.strip() == "DEFAULT_LANGUAGE":
                value = rest.strip().strip("'\"")
    return value if value in LANGUAGES else "zh_Hans"


def _not_writable(folder: Path) -> OSError | None:
    """Why this user cannot create files in `folder` (made if missing), or None."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-check-"):
            return None
    except OSError as exc:
        return exc


def _data_dir_problem(settings: Settings) -> Problem | None:
    if (exc := _not_writable(settings.data_dir)) is not None:
        return Problem(N_("DATA_DIR {path} cannot be written to ({reason}): choose a folder this user may write in."),
                       {"path": str(settings.data_dir), "reason": exc.strerror or type(exc).__name__})
    return None


def _port_problem(settings: Settings) -> Problem | None:
    try:
        infos = socket.getaddrinfo(settings.http_host, settings.http_port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        return Problem(N_("HTTP_HOST “{host}” is not an address of this machine."), {"host": settings.http_host})
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        if os.name != "nt":
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            return Problem(N_("HTTP_PORT {port} on {host} cannot be used ({reason}): stop the program that uses it "
                              "or choose another HTTP_PORT."),
                           {"port": settings.http_port, "host": settings.http_host,
                            "reason": exc.strerror or type(exc).__name__})
    return None


async def _database_problem(settings: Settings) -> Problem | None:
    from sqlalchemy.engine.url import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    from bot.db import make_engine

    url = settings.effective_database_url
    try:
        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite":  # a file: its folder must be writable (connecting would create it)
            folder = Path(parsed.database or ".").resolve().parent
            if parsed.database not in (None, "", ":memory:") and _not_writable(folder) is not None:
                return Problem(N_("DATABASE_URL: the database file cannot be created in {path}."),
                               {"path": str(folder)})
            return None
        engine = make_engine(url)
    except (ArgumentError, NoSuchModuleError, ValueError):
        return Problem(N_("DATABASE_URL is not a database address that FieldCRM knows (use e.g. "
                          "postgresql://user:password@host:5432/crm, or leave it empty for SQLite)."))
    except OSError as exc:  # SQLite: its folder cannot be made
        return Problem(N_("DATABASE_URL: the database cannot be opened ({reason})."), {"reason": str(exc)})
    try:
        async with asyncio.timeout(15):
            async with engine.connect():
                pass
    except Exception as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0][:200] or type(exc).__name__
        return Problem(N_("DATABASE_URL: the database cannot be reached ({reason}). Check the address, user, "
                          "password and that the server runs."), {"reason": reason})
    finally:
        await engine.dispose()
    return None


async def _token_problem(settings: Settings, warn: Callable[[Problem], None]) -> Problem | None:
    from aiogram.exceptions import TelegramUnauthorizedError

    from bot.app import create_bot

    bot = create_bot(settings)
    try:
        async with asyncio.timeout(20):
            await bot.get_me()
    except TelegramUnauthorizedError:
        return Problem(N_("BOT_TOKEN was refused by Telegram (401 Unauthorized): copy the token again from "
                          "@BotFather."))
    except Exception as exc:
        warn(Problem(N_("Telegram cannot be reached yet ({reason}); the bot starts and keeps trying."),
                     {"reason": type(exc).__name__}))
    finally:
        await bot.session.close()
    return None


SPLIT_ROLES = ("bot", "worker")  # roles meant to run beside other processes (README, "Scale-out")


async def check(settings: Settings, *, serves_http: bool, asks_telegram: bool, role: str | None = None,
                warn: Callable[[Problem], None] = lambda problem: None) -> list[Problem]:
    """What stops this configuration from running here, checked before anything is written. `role`: the
    role `run` starts (None for other commands); a split role without REDIS_URL is warned about — its
    sends would keep Telegram's limits alone, not together with the other processes'."""
    if role in SPLIT_ROLES and not settings.redis_url:
        warn(Problem(N_("REDIS_URL is not set: this {role} process keeps Telegram's rate limits on its own, not "
                        "together with other processes, so several of them can exceed the limits. Set REDIS_URL "
                        "for several processes (roles bot and worker), or run one process (role all)."),
                     {"role": role}))
    problems = [p for p in (_data_dir_problem(settings),) if p]
    if serves_http and (port := _port_problem(settings)):
        problems.append(port)
    data_dir_ok = not problems
    if (settings.database_url or data_dir_ok) and (database := await _database_problem(settings)):
        problems.append(database)
    if asks_telegram and not problems and (token := await _token_problem(settings, warn)):
        problems.append(token)
    return problems
