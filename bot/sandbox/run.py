"""Run mode without BOT_TOKEN: the offline sandbox.

It loads demo data into an empty database, gives four demo people sandbox Telegram ids, serves the Bot
API stand-in and the chat page on HTTP_HOST:HTTP_PORT, and runs the real bot (long polling) and the
scheduler against the stand-in — nothing in the bot knows it is a sandbox. The page's ⏩ buttons move
the scheduler's clock and run the reminder jobs at once, so digests and reminders arrive on demand.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.settings import Settings
from models import utcnow
from models.common import CLOCK

log = logging.getLogger("fieldcrm.sandbox")
SANDBOX_TOKEN = "100200300:FieldCRM-sandbox"
DEMO_CUSTOMERS = 300
LANGUAGE_CODES = {"zh_Hans": "zh-hans", "zh_Hant": "zh-hant", "en": "en"}


@dataclass
class SandboxClock:
    """The sandbox's hand on the process's one clock (models.common.CLOCK): moving it moves what handlers,
    services and the scheduler all see as now."""

    @property
    def offset(self) -> timedelta:
        return CLOCK.offset

    @offset.setter
    def offset(self, value: timedelta) -> None:
        CLOCK.offset = value

    def __call__(self) -> datetime:
        return utcnow()


class RealData(Exception):
    """The database holds real customers, not the demo set: the sandbox will not touch it."""


async def prepare(sessions: async_sessionmaker[AsyncSession], *, customers: int = DEMO_CUSTOMERS):
    """Demo data when the database is empty; the demo people, with a guest who has no invitation yet.
    A database with real data (customers, but no demo set) is refused: giving its people sandbox ids
    would change real accounts."""
    from bot.sandbox.app import Persona
    from services import demo

    async with sessions() as session, session.begin():
        if await demo.is_empty(session):
            await demo.generate(session, customers=customers, seed=7)
        elif not await demo.holds_demo_data(session):
            raise RealData()
        people = await demo.sandbox_people(session)
        personas = [Persona(u.telegram_id, u.name, u.role, LANGUAGE_CODES.get(u.language, "en")) for u in people]
    personas.append(Persona(demo.SANDBOX_GUEST, "新同事", "guest", "zh-hans"))
    return personas


async def run(settings: Settings, sessions: async_sessionmaker[AsyncSession], *,
              announce: Callable[[str], None] = print, ready: asyncio.Event | None = None) -> None:
    from bot.app import close_dispatcher, create_bot, create_dispatcher
    from bot.background import close_all
    from bot.runner import jobs_runtime, open_index, run_polling, saved_index
    from bot.sandbox.app import Controls, create_app
    from bot.sandbox.server import serving
    from bot.sandbox.telegram import BotApi
    from jobs import reminders as jobs
    from services import updates

    clock = SandboxClock()
    clock.offset = timedelta()
    if settings.sandbox_start is not None:  # e.g. a weekend night, so nothing is due until the clock is moved
        clock.offset = settings.sandbox_start - utcnow()
    personas = await prepare(sessions)  # the demo data is made as of the sandbox's today
    runtime = jobs_runtime(sessions, settings, clock=clock)
    zone = ZoneInfo(settings.default_timezone)

    def now_text() -> str:
        return clock().astimezone(zone).strftime("%Y-%m-%d %H:%M %Z")

    async def advance(hours: float) -> str:
        clock.offset += timedelta(hours=hours)
        # In the background thread, as the scheduler runs them: the people using the sandbox keep their replies.
        await jobs.apart(runtime, jobs.score_rfm)  # the cards' RFM follows the sandbox's calendar (services.rfm)
        await jobs.apart(runtime, jobs.scan)
        await jobs.apart(runtime, jobs.plan_digests)
        await jobs.apart(runtime, jobs.plan_manager_reports)  # the managers' daily and weekly digests too
        return now_text()  # the scheduler's drain job sends what became due within a few seconds

    async with sessions() as session:  # a restarted sandbox goes on counting updates where the bot left off
        first_update_id = await updates.highest(session) + 1
    api = BotApi(SANDBOX_TOKEN, first_update_id=first_update_id)
    app = create_app(api, Controls(personas=personas, advance=advance, now=now_text,
                                   language=settings.default_language))
    async with serving(app, settings.http_host, settings.http_port) as url:
        bot_settings = settings.model_copy(update={"bot_token": SecretStr(SANDBOX_TOKEN), "bot_api_url": url,
                                                   "admin_ids": [p.telegram_id for p in personas
                                                                 if p.role == "admin"]})
        index, building = await open_index(sessions, saved=saved_index(settings, sessions))
        bot = create_bot(bot_settings)
        dispatcher = create_dispatcher(bot_settings, sessions, index)
        announce(url + "/")
        if ready is not None:
            ready.set()
        try:
            await run_polling(bot, dispatcher, sessions, bot_settings, index, runtime=runtime)
        finally:
            await api.close()  # the page's long poll answers now, before the server stops
            clock.offset = timedelta()  # the process's clock is real again
            await close_dispatcher(dispatcher)
            building.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await building
            with contextlib.suppress(Exception):
                await bot.session.close()
            await close_all(stop_worker=True)
