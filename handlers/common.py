"""Cancel, anywhere: /cancel (or 取消 / cancel) leaves whatever conversation is going on."""

from __future__ import annotations

import html
import secrets

from aiogram import F, Router
from aiogram.filters import Command
from aiogram.fsm.context import FSMContext
from aiogram.types import Message, ReplyKeyboardRemove
from aiogram.utils.i18n import gettext as _

from bot.filters import Registered
from services.messages import DomainError

CANCEL_WORDS = {"取消", "cancel", "算了", "取消了"}


async def cancel(message: Message, state: FSMContext) -> None:
    if await state.get_state() is None:
        await message.answer(_("There is nothing to cancel."))
        return
    await state.clear()
    # Also takes away a custom keyboard the conversation may have shown (e.g. "send my location").
    await message.answer(_("Cancelled. Nothing more was saved."), reply_markup=ReplyKeyboardRemove())


async def pick_customer(message: Message, query: str, index, viewer, button) -> int | None:
    """A command naming a customer (/history 人易, /audit 人易): the one the lookup is sure of, else None after
    saying that nothing matches or offering the matches as buttons (`button(customer_id)` → callback data)."""
    from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup

    from services.lookup import confident

    query = query.strip()[:100]
    matches = index.search(query, viewer, limit=8)
    if not matches:
        await message.answer(still_loading() if index.loading
                             else _("No customer matches “{query}”.").format(query=html.escape(query)))
        return None
    if (winner := confident(matches)) is not None:
        return winner.customer_id
    buttons = [[InlineKeyboardButton(text=m.name[:60], callback_data=button(m.customer_id))] for m in matches]
    await message.answer(_("Which one?"), reply_markup=InlineKeyboardMarkup(inline_keyboard=buttons))
    return None


def still_loading() -> str:
    """What a search that found nothing says while the lookup index is still being built after a start
    (services.lookup rule 6)."""
    return _("The customer list is still loading after a restart (a minute or two at most). Until then only "
             "a customer's exact full name, short name or alias, or a whole phone number, finds it.")


def new_flow() -> str:
    """A token for one run of a conversation (kept in its state data, see `origin`)."""
    return secrets.token_hex(6)


def origin(message: Message, data: dict) -> str:
    """The input a write comes from: the message typed, or the bot's message whose button was tapped, in
    this run of the conversation (services store it as origin_key, so a double tap or a redelivered update
    saves once). The run's token matters: an old message's button tapped in a later run is a new input."""
    return f"tg:{message.chat.id}:{message.message_id}:{data.get('flow', '')}"


def try_again(refused: DomainError, *, skippable: bool = False) -> str:
    """Why the input was refused, and what the person can do now (the conversation stays where it was)."""
    return refused.problem.render(_) + "\n" + (_("Try again, skip, or /cancel.") if skippable
                                               else _("Try again, or /cancel."))


async def text_please(message: Message) -> None:
    """Inside a conversation that waits for typed text: a sticker, photo or file gets this."""
    await message.answer(_("Please answer with text — or /cancel."))


async def buttons_please(message: Message) -> None:
    """Inside a conversation that waits for a tap: typing gets this."""
    await message.answer(_("Please tap one of the buttons above — or /cancel."))


def create_router() -> Router:
    router = Router(name="common")
    router.message.filter(Registered())
    router.message.register(cancel, Command("cancel"))
    router.message.register(cancel, F.text.lower().in_(CANCEL_WORDS))
    return router
