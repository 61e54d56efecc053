"""Finding a customer in chat: any plain text in a private chat is a search, and so is /find."""

from __future__ import annotations

import html

from aiogram import F, Router
from aiogram.enums import ChatType
from aiogram.filters import Command, CommandObject
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message
from aiogram.utils.i18n import gettext as _
from sqlalchemy.ext.asyncio import AsyncSession

from bot.callbacks import CustomerCallback
from bot.filters import Registered
from bot.settings import Settings
from handlers.card import show_card
from handlers.common import still_loading
from handlers.new_customer import LAST_QUERY, create_button
from models import User
from services.access import Viewer
from services.lookup import LookupIndex, confident, is_exact, probably_new

MAX_QUERY = 100
RESULTS = 8


async def search(message: Message, query: str, session: AsyncSession, user: User, viewer: Viewer,
                 index: LookupIndex, settings: Settings, state: FSMContext) -> None:
    query = query.strip()
    if not query:
        await message.answer(_("Type part of a customer's name, its pinyin or initials, a contact's name or a "
                               "phone number."))
        return
    if len(query) > MAX_QUERY:
        await message.answer(_("That is too long for a search: type a few characters of the name."))
        return
    matches = index.search(query, viewer, limit=RESULTS)
    if not matches and index.loading:
        await message.answer(still_loading())
        return
    if not matches:
        await state.update_data({LAST_QUERY: query})
        await message.answer(_("No customer matches “{query}”.").format(query=html.escape(query)),
                             reply_markup=create_button(query))
        return
    # Unless the query is exactly a customer, creating it is offered beside what was found.
    new = [] if is_exact(matches) else create_button(query).inline_keyboard
    if new:
        await state.update_data({LAST_QUERY: query})
    if (winner := confident(matches)) is not None:
        if await show_card(message, session, user, viewer, settings, winner.customer_id, extra_rows=new):
            return
    buttons = [[InlineKeyboardButton(text=m.name[:60], callback_data=CustomerCallback(action="card", id=m.customer_id)
                                     .pack())] for m in matches]
    if probably_new(matches):  # nothing close: adding it comes first, the namesakes after
        await message.answer(_("No customer matches “{query}” well. Add it, or is it one of these?").format(
            query=html.escape(query)), reply_markup=InlineKeyboardMarkup(inline_keyboard=new + buttons))
        return
    await message.answer(_("Which one?"), reply_markup=InlineKeyboardMarkup(inline_keyboard=buttons + new))


async def find_command(message: Message, command: CommandObject, **data) -> None:
    await search(message, command.args or "", **_pick(data))


async def find_text(message: Message, **data) -> None:
    await search(message, message.text, **_pick(data))


async def not_text(message: Message) -> None:
    """Stickers, photos, unknown commands … outside any conversation: say what works."""
    await message.answer(_("I did not understand that. Type a customer's name to find them."))


async def unknown_button(callback: CallbackQuery) -> None:
    """A button no handler takes (from an old version of a message, or forged): say so, change nothing."""
    await callback.answer(_("That button no longer works. Search for the customer again."), show_alert=True)


def _pick(data: dict) -> dict:
    return {key: data[key] for key in ("session", "user", "viewer", "index", "settings", "state")}


def create_router() -> Router:
    """Any plain text in a private chat is a search (registered after every other conversation's
    routers, so their states and commands win)."""
    router = Router(name="find")
    router.message.filter(Registered())
    router.message.register(find_command, Command("find"))
    router.message.register(find_text, F.chat.type == ChatType.PRIVATE, F.text, ~F.text.startswith("/"))
    router.message.register(not_text, F.chat.type == ChatType.PRIVATE)
    router.callback_query.register(unknown_button, Registered())
    return router
