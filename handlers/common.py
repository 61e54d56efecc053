"""Cancel, anywhere: /cancel (or 取消 / cancel) leaves whatever conversation is going on."""

from __future__ import annotations

from aiogram import F, Router
from aiogram.filters import Command
from aiogram.fsm.context import FSMContext
from aiogram.types import Message
from aiogram.utils.i18n import gettext as _

from bot.filters import Registered

CANCEL_WORDS = {"取消", "cancel", "算了", "取消了"}


async def cancel(message: Message, state: FSMContext) -> None:
    if await state.get_state() is None:
        await message.answer(_("There is nothing to cancel."))
        return
    await state.clear()
    await message.answer(_("Cancelled. Nothing more was saved."))


def create_router() -> Router:
    router = Router(name="common")
    router.message.filter(Registered())
    router.message.register(cancel, Command("cancel"))
    router.message.register(cancel, F.text.lower().in_(CANCEL_WORDS))
    return router
