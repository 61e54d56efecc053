"""No update ends in a traceback the user never hears of.

`ErrorsMiddleware` is the outermost of FieldCRM's update middlewares, so it sees what the database
transaction (inside it) did not survive:

- a rule's refusal (`DomainError`) — handlers do not catch them: the transaction is rolled back and the
  person gets the refusal, localized — as an alert for a button (a message if the tap was answered
  already), as a reply for a message, with "Try again(, skip), or /cancel." inside a conversation, which
  stays at the same step (its state is rolled back too, bot.fsm);
- a database that is locked or unreachable, a button whose data no longer fits (a forged or ancient
  id): "nothing was saved, try again" — the same words for every unexpected error, which is logged;
- a button tap that no handler answered is answered anyway, so the button never keeps spinning (with
  "this button is out of date" when no handler took it at all).

Updates without a person behind them (channel posts, a message whose sender Telegram hides) are
ignored on purpose: nobody could be answered and nobody may act through them.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any

from aiogram import BaseMiddleware, Bot
from aiogram.client.session.middlewares.base import BaseRequestMiddleware, NextRequestMiddlewareType
from aiogram.dispatcher.event.bases import UNHANDLED
from aiogram.dispatcher.flags import get_flag
from aiogram.methods import AnswerCallbackQuery, Response, TelegramMethod
from aiogram.methods.base import TelegramType
from aiogram.types import TelegramObject, Update

from bot.i18n import gettext_for, pick_language
from services.messages import DomainError

log = logging.getLogger("fieldcrm.errors")
ANSWERED: ContextVar[set[str] | None] = ContextVar("answered_callbacks", default=None)
Handler = Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]]


class AnsweredCallbacks(BaseRequestMiddleware):
    """Bot session middleware: notes which callback queries this update's handling has answered."""

    async def __call__(self, make_request: NextRequestMiddlewareType[TelegramType], bot: Bot,
                       method: TelegramMethod[TelegramType]) -> Response[TelegramType]:
        if isinstance(method, AnswerCallbackQuery) and (answered := ANSWERED.get()) is not None:
            answered.add(method.callback_query_id)
        return await make_request(bot, method)


def _person(update: Update):
    return getattr(update.event, "from_user", None) if update.event is not None else None


class Told(Exception):
    """A refusal a handler has already put into words (e.g. with a hint of its own): rolled back like any
    refusal and told as it is."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


class RefusalHints(BaseMiddleware):
    """Inner message middleware: marks a refusal from a handler flagged `skippable` (the step has a Skip
    button), so the reply says "Try again, skip, or /cancel."."""

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        try:
            return await handler(event, data)
        except DomainError as refused:
            refused.skippable = bool(get_flag(data, "skippable"))
            raise


class ErrorsMiddleware(BaseMiddleware):
    def __init__(self, default_language: str) -> None:
        self.default_language = default_language

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        if not isinstance(event, Update):
            return await handler(event, data)
        if event.event is None or _person(event) is None:
            return UNHANDLED  # an update type we do not use, or nobody to answer (see the module docstring)
        answered: set[str] = set()
        token, result = ANSWERED.set(answered), None
        try:
            result = await handler(event, data)
            return result
        except Told as told:
            await self._tell(event, data, told.text, alert=True, answered=answered)
        except DomainError as refused:
            _ = self._gettext(event, data)
            text = refused.problem.render(_)
            message = event.message
            answering = message is not None and not (message.text or "").startswith("/")
            if answering and data.get("raw_state"):  # an answer inside a conversation: the step waits for another try
                text += "\n" + (_("Try again, skip, or /cancel.") if getattr(refused, "skippable", False)
                                else _("Try again, or /cancel."))
            await self._tell(event, data, text, alert=True, answered=answered)
        except Exception:
            log.exception("update %s failed", event.update_id)
            _ = self._gettext(event, data)
            await self._tell(event, data, _("Sorry, that did not work and nothing was saved. Please try again "
                                            "in a moment."), alert=True, answered=answered)
        finally:
            query = event.callback_query
            if query is not None and query.id not in answered:
                # No handler took the tap (a button from an old conversation, forged or garbled data).
                _ = self._gettext(event, data)
                text = _("This button is out of date. Open the card or the list again.") if result is UNHANDLED \
                    else None
                with contextlib.suppress(Exception):  # too late or already answered: nothing more to do
                    await data["bot"].answer_callback_query(query.id, text, show_alert=text is not None)
            ANSWERED.reset(token)
        return None

    def _gettext(self, update: Update, data: dict[str, Any]):
        language = data.get("locale") or pick_language(getattr(_person(update), "language_code", None),
                                                       self.default_language)
        return gettext_for(language)

    async def _tell(self, update: Update, data: dict[str, Any], text: str, *, alert: bool,
                    answered: set[str] = frozenset()) -> None:
        bot: Bot = data["bot"]
        query = update.callback_query
        try:
            if query is not None and query.id in answered and query.message is not None:
                await bot.send_message(query.message.chat.id, text)  # the tap was answered before the refusal
            elif query is not None:
                await bot.answer_callback_query(query.id, text[:200], show_alert=alert)
            elif update.inline_query is not None:
                await bot.answer_inline_query(update.inline_query.id, [], cache_time=0, is_personal=True)
            elif update.message is not None:
                await bot.send_message(update.message.chat.id, text)
        except Exception:
            log.warning("could not tell the person about the failed update %s", update.update_id)
