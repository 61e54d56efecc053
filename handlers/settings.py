"""A user's own settings: /lang."""

from __future__ import annotations

from aiogram import Router
from aiogram.filters import Command
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _
from sqlalchemy.ext.asyncio import AsyncSession

from bot.callbacks import LanguageCallback
from bot.filters import Registered
from models import User
from services.messages import DomainError
from services.users import set_language

NAMES = {"zh_Hans": "简体中文", "zh_Hant": "繁體中文", "en": "English"}


async def choose_language(message: Message) -> None:
    buttons = [[InlineKeyboardButton(text=name, callback_data=LanguageCallback(code=code).pack())]
               for code, name in NAMES.items()]
    await message.answer(_("Choose your language:"), reply_markup=InlineKeyboardMarkup(inline_keyboard=buttons))


async def language_chosen(callback: CallbackQuery, callback_data: LanguageCallback, session: AsyncSession,
                          user: User, i18n: I18n) -> None:
    try:
        await set_language(session, user.id, callback_data.code)
    except DomainError:
        await callback.answer()
        return
    await callback.answer()
    with i18n.use_locale(callback_data.code):  # answer in the language just chosen
        await callback.message.answer(_("Language set: {name}.").format(name=NAMES[callback_data.code]))


def create_router() -> Router:
    router = Router(name="settings")
    router.message.filter(Registered())
    router.callback_query.filter(Registered())
    router.message.register(choose_language, Command("lang"))
    router.callback_query.register(language_chosen, LanguageCallback.filter())
    return router
