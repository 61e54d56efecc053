"""Binding a team group chat (admins, inside the group): /bindteam → pick the manager → the group gets that
team's weekly report; /unbindteam stops it."""

from __future__ import annotations

import html

from aiogram import F, Router
from aiogram.filters import Command
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message
from aiogram.utils.i18n import gettext as _
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.callbacks import TeamChatCallback
from bot.filters import Registered
from models import Role, User
from services.access import by_name
from services.users import bind_team_chat, unbind_chat

GROUPS = F.chat.type.in_({"group", "supergroup"})


async def bind_command(message: Message, session: AsyncSession, user: User) -> None:
    if user.role != Role.admin:
        await message.answer(_("Only an admin can bind this group to a team."))
        return
    managers = by_name(list((await session.execute(select(User).where(
        User.role.in_([Role.manager, Role.admin]), User.active.is_(True)))).scalars()))[:40]
    rows = [[InlineKeyboardButton(text=m.name, callback_data=TeamChatCallback(manager=m.id).pack())] for m in managers]
    await message.answer(_("Whose team is this group? It will get that team's weekly report."),
                         reply_markup=InlineKeyboardMarkup(inline_keyboard=rows))


async def bind_chosen(callback: CallbackQuery, callback_data: TeamChatCallback, session: AsyncSession,
                      user: User) -> None:
    manager = await bind_team_chat(session, user, callback_data.manager, callback.message.chat.id)
    await callback.answer()
    await callback.message.edit_text(_("This group now gets the weekly report of {name}'s team.").format(
        name=html.escape(manager.name)))


async def unbind_command(message: Message, session: AsyncSession, user: User) -> None:
    count = await unbind_chat(session, user, message.chat.id)
    await message.answer(_("This group no longer gets team reports.") if count else
                         _("This group was not bound to a team."))


def create_router() -> Router:
    router = Router(name="team_chat")
    router.message.filter(Registered(), GROUPS)
    router.callback_query.filter(Registered())
    router.message.register(bind_command, Command("bindteam"))
    router.message.register(unbind_command, Command("unbindteam"))
    router.callback_query.register(bind_chosen, TeamChatCallback.filter())
    return router
