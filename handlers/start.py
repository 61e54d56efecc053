"""Getting in: /start (with or without an invitation), /invite, and a polite answer to strangers."""

from __future__ import annotations

import html

from aiogram import Bot, Router
from aiogram.filters import Command, CommandObject, CommandStart
from aiogram.types import CallbackQuery, InlineQuery, Message
from aiogram.utils.i18n import gettext as _
from sqlalchemy.ext.asyncio import AsyncSession

from bot.errors import Told
from bot.filters import Registered
from bot.formatting import day
from bot.i18n import pick_language
from bot.labels import role_from_words, role_label
from bot.settings import Settings
from models import Role, User
from services.invites import admit_configured_admin, create_invite, redeem_invite
from services.messages import DomainError


def _welcome(user: User) -> str:
    return _("Welcome, {name}! Type a customer's name, pinyin, initials or phone number to find them.").format(
        name=html.escape(user.name))


def _stranger_text(message: Message) -> str:
    return _("This bot is for our sales team. Please ask your admin for an invitation link "
             "(your Telegram id is {id}).").format(id=message.from_user.id)


async def start(message: Message, command: CommandObject, session: AsyncSession, user: User | None,
                settings: Settings) -> None:
    sender = message.from_user
    language = pick_language(sender.language_code, settings.default_language)
    name = " ".join(part for part in (sender.first_name, sender.last_name) if part)
    if user is None:
        user = await admit_configured_admin(session, telegram_id=sender.id, admin_ids=settings.admin_ids,
                                            name=name, language=language, timezone=settings.default_timezone)
    if user is None and command.args:
        try:
            user = await redeem_invite(session, command.args.strip(), telegram_id=sender.id, name=name,
                                       language=language, timezone=settings.default_timezone)
        except DomainError as refused:  # rolled back: an invitation is used up only by someone who got in
            raise Told(refused.problem.render(_) + "\n" + _stranger_text(message)) from None
    if user is None:
        await message.answer(_stranger_text(message))
        return
    await message.answer(_welcome(user))


async def invite(message: Message, command: CommandObject, session: AsyncSession, user: User, bot: Bot) -> None:
    role = role_from_words(command.args or Role.rep)
    created = await create_invite(session, by=user, role=role)
    me = await bot.me()
    link = f"https://t.me/{me.username}?start={created.code}"
    await message.answer(_("Invitation for a new {role}, valid until {date}, usable once:\n{link}").format(
        role=html.escape(role_label(role)), date=day(created.expires_at, user.language, user.timezone), link=link))


async def stranger(message: Message) -> None:
    await message.answer(_stranger_text(message))


async def stranger_button(callback: CallbackQuery) -> None:
    await callback.answer(_("Please ask your admin for an invitation first."), show_alert=True)


async def stranger_inline(inline_query: InlineQuery) -> None:
    await inline_query.answer([], is_personal=True, cache_time=0)


def create_router() -> Router:
    """/start and /invite; anything else from someone without an account gets the polite answer."""
    router = Router(name="start")
    router.message.register(start, CommandStart())
    router.message.register(invite, Command("invite"), Registered())
    router.message.register(stranger, ~Registered())
    router.callback_query.register(stranger_button, ~Registered())
    router.inline_query.register(stranger_inline, ~Registered())
    return router
