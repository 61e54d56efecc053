"""Stand-ins the tests hand to the bot's worker processes (bot.background): module-level functions, so the
worker process imports this module to run them — and only this module. Kept apart from the test modules
on purpose: a worker that had to import a test module (aiogram, the test bot kit, PIL …) took 4.6 s to
run its first piece of work instead of 0.8 s, and the tests that start workers start several each. Import
only what the product's own work would import here, inside the functions."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

SLOW = 1.5  # seconds of Python the slow stand-ins spend
STORE_DELAY = 2.0  # seconds a stored report takes in `slowly_stored_report`


def busy(seconds: float) -> None:
    """Seconds of Python (the interpreter held, as a report's or a reading's own work holds it)."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        sum(range(1000))


# ---------------------------------------------------------------------------------------- business cards


async def napping(data: bytes, sessions=None):
    """A reading that takes a second."""
    from services.namecards import CardFields

    await asyncio.sleep(1)
    return CardFields(name="王芳")


async def slow_read(pid_file: str, data: bytes, sessions=None):
    """services.namecards.read_card_work after SLOW seconds of Python; notes the process it ran in."""
    from services.namecards import read_card_work

    Path(pid_file).write_text(str(os.getpid()))
    busy(SLOW)
    return await read_card_work(data, sessions)


async def as_read(data: bytes, sessions=None):
    """A reading that returns what the "photo" says it is (JSON of the fields): for the matching rules, where
    the OCR itself is not what is tested."""
    import json

    from services.namecards import CardFields

    return CardFields.from_dict(json.loads(data))


async def stuck(data: bytes, sessions=None):
    """A reading that never ends in time (the OCR stuck on a strange picture)."""
    if data == b"stuck":
        await asyncio.sleep(60)
    return await as_read(data)


async def canned_read(data: bytes, sessions=None):
    """The "card" photo reads as a card of another rep's customer (a real reading for anything else): the
    fuzz reaches every step of the card conversation without seconds of OCR each time."""
    from services.namecards import CardFields, read_card_work

    if data == b"CARD":
        return CardFields(company="北京远方科技有限公司", name="张伟", title="经理", mobile="138 0013 8000",
                          office="010-88886666")
    return await read_card_work(data, sessions)


# ---------------------------------------------------------------------------------------- any lane


async def napping_for(seconds: float, sessions=None) -> int:
    await asyncio.sleep(seconds)
    return os.getpid()


async def holding(seconds: float, release: str, sessions) -> int:
    """Long work in the reports' and jobs' lane, keeping its worker for `seconds` or until the file `release`
    exists, whichever comes first (asleep: the lane is taken all the same, and the card's own reading keeps
    the cores); the process it ran in. The test lets it go once it has seen what it waited for."""
    end = time.monotonic() + seconds
    while time.monotonic() < end and not os.path.exists(release):
        time.sleep(0.05)
    return os.getpid()


async def failing(sessions) -> None:
    raise ValueError("bad")


async def counting(sessions) -> int:
    from sqlalchemy import func, select

    from models import Reminder

    async with sessions() as session:
        return await session.scalar(select(func.count()).select_from(Reminder))


async def sleeping(sessions) -> None:
    await asyncio.sleep(60)


# ---------------------------------------------------------------------------------------- reports, jobs, routes


async def slow_report_detail(pid_file: str, sessions, **options):
    """bot.report_view.report_detail, after SLOW seconds of Python; notes which process built it."""
    from bot.report_view import report_detail

    Path(pid_file).write_text(str(os.getpid()))
    busy(SLOW)
    return await report_detail(sessions, **options)


async def noting_pid(real: str, pid_file: str, sessions, **options):
    """bot.report_view's `real` function, noting which process ran it."""
    import bot.report_view as view

    Path(pid_file).write_text(str(os.getpid()))
    return await getattr(view, real)(sessions, **options)


async def slow_scan(runtime) -> tuple[int, int]:
    """jobs.scan after SLOW seconds of Python: (the process it ran in, new reminders)."""
    from jobs import reminders as jobs

    busy(SLOW)
    return os.getpid(), await jobs.scan(runtime)


async def slowly_stored_report(sessions, **options):
    """bot.report_view.report_summary, with the storing of the report it makes taking STORE_DELAY seconds more
    (once: the stand-in puts the real one back when it is called)."""
    import services.reports as reports
    from bot.report_view import report_summary

    real = reports._keep

    async def slow(*args, **kwargs):
        reports._keep = real
        await asyncio.sleep(STORE_DELAY)
        return await real(*args, **kwargs)
    reports._keep = slow
    return await report_summary(sessions, **options)


async def planned_noting_pid(pid_file: str, *args, sessions=None):
    """services.route.plan_work, noting the process it ran in."""
    from services.route import plan_work

    Path(pid_file).write_text(str(os.getpid()))
    return await plan_work(*args)


async def held_keys(sessions) -> list[str]:
    """The keys of the reports the worker process holds."""
    import services.reports as reports

    async with sessions() as session:
        return list(reports._held_for(session))



async def aiogram_loaded(runtime) -> bool:
    """Whether the bot framework is loaded in this worker process — a job (jobs.reminders.apart)."""
    import sys

    return "aiogram" in sys.modules
