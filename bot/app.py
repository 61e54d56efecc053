"""Composition: the Bot and the Dispatcher with its middlewares and routers."""

from __future__ import annotations

from aiogram import Bot
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.enums import ParseMode
from aiogram.fsm.storage.base import BaseEventIsolation, BaseStorage
from aiogram.fsm.storage.memory import MemoryStorage
from aiogram.utils.i18n import I18n
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.errors import ErrorsMiddleware, RefusalHints
from bot.i18n import DOMAIN, LOCALES_DIR
from bot.middlewares import DatabaseMiddleware, LocaleMiddleware, UserMiddleware
from bot.polling import Dispatcher
from bot.settings import Settings
from services.lookup import LookupIndex


def create_bot(settings: Settings, session=None) -> Bot:
    if session is None and settings.bot_api_url:
        session = AiohttpSession(api=TelegramAPIServer.from_base(settings.bot_api_url))
    from bot.errors import AnsweredCallbacks
    from bot.metrics import TelegramMetrics
    from bot.retry import RetryAfter

    token = settings.bot_token.get_secret_value() if settings.bot_token else ""
    bot = Bot(token=token, session=session, default=DefaultBotProperties(parse_mode=ParseMode.HTML))
    bot.session.middleware(RetryAfter())
    bot.session.middleware(AnsweredCallbacks())
    bot.session.middleware(TelegramMetrics())  # innermost: every attempt, 429s included
    return bot


def fsm_storage(settings: Settings) -> BaseStorage:
    """Conversation state: in Redis when REDIS_URL is set (several bot instances, survives restarts),
    else in memory; a change is written after the update's commit (bot.fsm)."""
    from bot.fsm import Buffered

    if settings.redis_url:
        from aiogram.fsm.storage.redis import RedisStorage

        return Buffered(RedisStorage.from_url(settings.redis_url))
    return Buffered(MemoryStorage())


def events_isolation(storage: BaseStorage) -> BaseEventIsolation:
    """One chat's updates are handled one after another, in the order they came (a double tap's second
    copy sees what the first did); across instances also under a Redis lock when the state lives in Redis."""
    from bot.fsm import LeasedRedisIsolation, OrderedIsolation

    if hasattr(storage, "redis"):
        # A short lease its holder renews: a long update keeps its chat, a killed bot frees it in seconds.
        return OrderedIsolation(LeasedRedisIsolation(storage.redis))
    return OrderedIsolation()


DETACHED_GRACE = 5.0  # s a report being made gets at shutdown


async def close_dispatcher(dispatcher: Dispatcher) -> None:
    """At shutdown: give detached work (reports being made) a few seconds, then write the ids of handled
    updates still waiting (bot.ledger)."""
    from bot.detached import settle

    await settle(timeout=DETACHED_GRACE)
    deferred = dispatcher.workflow_data.get("deferred_ids")
    if deferred is not None:
        await deferred.close()


def create_dispatcher(settings: Settings, sessions: async_sessionmaker[AsyncSession], index: LookupIndex) -> Dispatcher:
    from bot.background import for_sessions
    from bot.metrics import HandlerMetrics, UnhandledMetrics
    from handlers import (
        audit,
        card,
        common,
        contacts,
        edit,
        feedback,
        find,
        history,
        inline,
        namecard,
        nearby,
        new_customer,
        order,
        reminders,
        report,
        route,
        start,
        team_chat,
        visit,
    )
    from handlers import settings as user_settings

    storage = fsm_storage(settings)
    dispatcher = Dispatcher(storage=storage, events_isolation=events_isolation(storage), settings=settings,
                            background=for_sessions(sessions))  # where /report is built (bot.background)
    i18n = I18n(path=LOCALES_DIR, default_locale=settings.default_language, domain=DOMAIN)
    # Errors outermost, even outside aiogram's own FSM middleware (Redis down fails there).
    outer = dispatcher.update.outer_middleware
    builtin = list(outer[:])
    for middleware in builtin:
        outer.unregister(middleware)
    outer(ErrorsMiddleware(settings.default_language))
    for middleware in builtin:
        outer(middleware)
    database = dispatcher.update.outer_middleware(DatabaseMiddleware(sessions, index))
    dispatcher["deferred_ids"] = database.deferred  # written at shutdown (close_dispatcher)
    dispatcher.update.outer_middleware(UnhandledMetrics())
    for observer in ("message", "edited_message", "callback_query", "inline_query", "chosen_inline_result",
                     "my_chat_member"):
        dispatcher.observers[observer].middleware(HandlerMetrics())
    dispatcher.message.middleware(RefusalHints())
    dispatcher.update.outer_middleware(UserMiddleware(settings.reps_see_unassigned))
    dispatcher.update.outer_middleware(LocaleMiddleware(i18n, default_language=settings.default_language))
    # The start router first: it answers strangers; every other router requires an account.
    # Cancel first, so it wins in every state; the catch-all search last.
    dispatcher.include_routers(start.create_router(), common.create_router(), user_settings.create_router(),
                               card.create_router(),
                               visit.create_router(), order.create_router(), feedback.create_router(),
                               reminders.create_router(), history.create_router(), new_customer.create_router(),
                               edit.create_router(), contacts.create_router(), nearby.create_router(), route.create_router(),
                               inline.create_router(), report.create_router(), team_chat.create_router(),
                               audit.create_router(), namecard.create_router(),
                               find.create_router())
    return dispatcher
