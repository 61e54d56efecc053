"""Middlewares every update passes through, outermost first (bot.errors.ErrorsMiddleware wraps them all):

1. DatabaseMiddleware — one session and one transaction per update: a handler's changes are committed
   together when it returns, or rolled back together when it fails; afterwards the lookup index takes
   in the customers the update changed. The update's id is recorded in the same transaction, so a
   redelivered update is skipped (services.updates); on SQLite an update that wrote nothing has its id
   recorded a moment later with others' (bot.ledger), so looking up never waits for the write lock.
   Conversation state changes are held back and written after the commit (bot.fsm); they are also kept
   with the update's id, and a redelivered copy writes them again (a process killed between the commit
   and that write lost them before, and the rep's next message was read in the old state).
2. UserMiddleware — who is writing: their account (or None for strangers) and what they may see.
3. LocaleMiddleware — their language: the account's, else Telegram's, else DEFAULT_LANGUAGE.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware
from aiogram.dispatcher.event.bases import UNHANDLED
from aiogram.types import TelegramObject, Update
from aiogram.utils.i18n import I18nMiddleware
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot import index_feed
from bot.db import wrote
from bot.fsm import PENDING, pack, unpack, write_pending
from bot.i18n import pick_language
from bot.ledger import DeferredIds
from bot.logs import UPDATE_ID, USER_ID
from bot.retry import UPDATE_SESSION
from models import User
from services.access import viewer_for
from services.lookup import CHANGED, LookupIndex, refresh
from services.outbox import clear_unreachable
from services.updates import NOT_BEFORE, first_time, handled_before

log = logging.getLogger("fieldcrm")

Handler = Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]]


def _sender(update: Update):
    event = update.event
    return getattr(event, "from_user", None)


class _HandledMeanwhile(Exception):
    """Another instance committed the same update while this one handled it: this copy is rolled back."""


SLOW_RECORD = 1.0  # s: an update that waits longer than this to write its id is logged (issue 18)


class DatabaseMiddleware(BaseMiddleware):
    def __init__(self, sessions: async_sessionmaker[AsyncSession], index: LookupIndex) -> None:
        self.sessions = sessions
        self.index = index
        sqlite = sessions.kw["bind"].dialect.name == "sqlite"
        self.deferred = DeferredIds(sessions) if sqlite else None

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        pending: dict = {}
        replayed: dict = {}  # a redelivered copy: the conversation change its first handling made
        token = PENDING.set(pending)
        try:
            result = await self._in_transaction(handler, event, data, replayed)
        finally:
            PENDING.reset(token)
        update_id = event.update_id if isinstance(event, Update) else None
        if "fsm_storage" in data and (pending or replayed):
            # committed: now the conversation moves on (or, for a copy, catches up if it was left behind)
            await write_pending(data["fsm_storage"], pending or replayed, update_id, replay=not pending)
        return result

    async def _in_transaction(self, handler: Handler, event: TelegramObject, data: dict[str, Any],
                              replayed: dict) -> Any:
        update_id = event.update_id if isinstance(event, Update) else None
        UPDATE_ID.set(update_id)  # for the log lines of this update (bot.logs); the task's own context
        async with self.sessions() as session:
            try:
                async with session.begin():
                    before = NOT_BEFORE if update_id is None else await self._handled_before(session, update_id)
                    if before is not NOT_BEFORE:
                        log.info("update %s was handled before: skipped", update_id)
                        try:
                            replayed.update(unpack(before))
                        except (ValueError, TypeError, KeyError):  # unreadable: the copy is only skipped
                            log.warning("update %s: its kept conversation change cannot be read", update_id)
                        return UNHANDLED
                    data["session"] = session
                    data["index"] = self.index
                    replies = UPDATE_SESSION.set(session)  # where a reply held up by flood control is queued
                    try:
                        result = await handler(event, data)
                    finally:
                        UPDATE_SESSION.reset(replies)
                    # Recorded last, so an update that only reads never takes SQLite's write lock; a copy
                    # handled meanwhile by another instance makes this insert find the id: roll back.
                    # On SQLite an update that wrote nothing is recorded after the commit, with others.
                    recording = time.perf_counter()
                    defer = update_id is not None and self.deferred is not None and not await wrote(session)
                    conversation = pack(PENDING.get())
                    if update_id is not None and not defer and not await first_time(session, update_id, conversation):
                        raise _HandledMeanwhile
                    waited = time.perf_counter() - recording
                    if waited > SLOW_RECORD:  # the database's write lock was held elsewhere that long
                        log.warning("update %s waited %.1f s to record itself (the database was busy writing)",
                                    update_id, waited)
            except _HandledMeanwhile:
                log.info("update %s was handled meanwhile elsewhere: rolled back", update_id)
                PENDING.get().clear()  # rolled back: so is its conversation change (the other copy's stands)
                return UNHANDLED
            if defer:
                self.deferred.add(update_id, conversation)
            changed = set(session.info.get(CHANGED, ()))
            try:
                await refresh(self.index, session)
            except Exception:
                log.exception("lookup index refresh after update %s failed", update_id)
            await index_feed.publish(changed)  # the other instances' indexes (with REDIS_URL)
            return result


    async def _handled_before(self, session: AsyncSession, update_id: int) -> object:
        if self.deferred is not None and update_id in self.deferred:
            return self.deferred.conversation(update_id)
        return await handled_before(session, update_id)


class UserMiddleware(BaseMiddleware):
    def __init__(self, reps_see_unassigned: bool) -> None:
        self.reps_see_unassigned = reps_see_unassigned

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        sender = _sender(event) if isinstance(event, Update) else None
        user = None
        if sender is not None:
            session: AsyncSession = data["session"]
            user = await session.scalar(select(User).where(User.telegram_id == sender.id))
            if user is not None and not user.active:
                user = None  # a disabled account is treated as a stranger
            if user is not None:
                clear_unreachable(user)
        data["user"] = user
        USER_ID.set(user.id if user is not None else None)
        data["viewer"] = await viewer_for(data["session"], user, reps_see_unassigned=self.reps_see_unassigned) \
            if user is not None else None
        return await handler(event, data)


class LocaleMiddleware(I18nMiddleware):
    def __init__(self, *args: Any, default_language: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.default_language = default_language

    async def get_locale(self, event: TelegramObject, data: dict[str, Any]) -> str:
        user: User | None = data.get("user")
        if user is not None:
            language = user.language
        else:
            sender = _sender(event) if isinstance(event, Update) else getattr(event, "from_user", None)
            language = pick_language(getattr(sender, "language_code", None), self.default_language)
        data["locale"] = language  # for bot.errors, which answers after the transaction is gone
        return language
