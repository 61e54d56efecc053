"""A user's own settings: /settings (language, time zone, working hours, work days, /route's map app and
visit length) and /lang."""

from __future__ import annotations

import html
from datetime import datetime
from zoneinfo import ZoneInfo

from aiogram import Bot, F, Router
from aiogram.filters import Command, StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _
from babel.dates import get_day_names
from sqlalchemy.ext.asyncio import AsyncSession

from bot.callbacks import LanguageCallback, SettingsCallback
from bot.filters import Registered
from bot.formatting import locale
from bot.labels import map_app_name
from bot.runner import set_chat_menu
from bot.settings import Settings
from handlers.common import text_please
from models import User
from services.messages import DomainError
from services.route import NAVIGATORS, users_navigator, visit_minutes_for
from services.users import (
    parse_working_hours,
    set_language,
    set_navigator,
    set_timezone,
    set_visit_minutes,
    set_working_hours,
    toggle_work_day,
)

NAMES = {"zh_Hans": "简体中文", "zh_Hant": "繁體中文", "en": "English"}
ZONES = ("Asia/Shanghai", "Asia/Hong_Kong", "Asia/Taipei", "Asia/Singapore", "Asia/Tokyo", "Europe/London",
         "Europe/Berlin", "America/New_York", "America/Los_Angeles")
MAX_INPUT = 100
VISIT_CHOICES = (15, 20, 30, 45, 60, 90)  # minutes a customer visit takes, offered as buttons


class EditSettings(StatesGroup):
    timezone = State()
    hours = State()


def _button(text: str, action: str, value: str = "") -> InlineKeyboardButton:
    return InlineKeyboardButton(text=text, callback_data=SettingsCallback(action=action, value=value).pack())


def _offset(zone: str) -> str:
    offset = datetime.now(ZoneInfo(zone)).strftime("%z")
    return f"UTC{offset[:3]}:{offset[3:]}"


def weekday_names(language: str) -> dict[int, str]:
    """ISO weekday → its short name in the user's language (Babel: 0 = Monday)."""
    names = get_day_names("abbreviated", locale=locale(language))
    return {iso: names[iso - 1] for iso in range(1, 8)}


def summary(user: User, settings: Settings) -> str:
    names = weekday_names(user.language)
    days = " ".join(names[int(d)] for d in user.work_days)
    return "\n".join([
        "<b>" + _("Your settings") + "</b>",
        _("Language: {name}").format(name=NAMES.get(user.language, user.language)),
        _("Time zone: {zone} ({offset})").format(zone=html.escape(user.timezone), offset=_offset(user.timezone)),
        _("Working hours: {start}–{end}").format(start=user.work_start.strftime("%H:%M"),
                                                 end=user.work_end.strftime("%H:%M")),
        _("Work days: {days}").format(days=days),
        _("Map app for /route: {app}").format(app=_map_choice(user)),
        _visit_choice(user, settings),
        _("Reminders and digests reach you on work days, inside your working hours, in your time zone."),
    ])


def _visit_choice(user: User, settings: Settings) -> str:
    minutes = visit_minutes_for(user, settings.route_visit_minutes)
    if user.visit_minutes is None:
        return _("Visit length for /route: {minutes} min (the team's default)").format(minutes=minutes)
    return _("Visit length for /route: {minutes} min").format(minutes=minutes)


def _map_choice(user: User) -> str:
    if user.navigator is None:
        return _("by language ({app})").format(app=map_app_name(users_navigator(user)))
    return map_app_name(user.navigator)


def settings_keyboard(user: User) -> InlineKeyboardMarkup:
    names = weekday_names(user.language)
    days = [_button(("✅" if str(d) in user.work_days else "▫️") + names[d], "day", str(d)) for d in range(1, 8)]
    return InlineKeyboardMarkup(inline_keyboard=[
        [_button(_("🌐 Language"), "lang"), _button(_("🕒 Time zone"), "tz"), _button(_("⏰ Working hours"), "hours")],
        days[:4], days[4:],
        [_button(_("🗺 Map app"), "maps"), _button(_("⏱ Visit length"), "visits")],
    ])


async def show_settings(message: Message, state: FSMContext, user: User, settings: Settings) -> None:
    await state.clear()
    await message.answer(summary(user, settings), reply_markup=settings_keyboard(user))


async def choose_language(message: Message) -> None:
    buttons = [[InlineKeyboardButton(text=name, callback_data=LanguageCallback(code=code).pack())]
               for code, name in NAMES.items()]
    await message.answer(_("Choose your language:"), reply_markup=InlineKeyboardMarkup(inline_keyboard=buttons))


async def language_chosen(callback: CallbackQuery, callback_data: LanguageCallback, session: AsyncSession,
                          user: User, i18n: I18n, bot: Bot) -> None:
    try:
        await set_language(session, user.id, callback_data.code)
    except DomainError:
        await callback.answer()
        return
    await callback.answer()
    if callback.message is not None and callback.message.chat.type == "private":  # the menu follows the language
        await set_chat_menu(bot, callback.message.chat.id, callback_data.code, user.role)
    with i18n.use_locale(callback_data.code):  # answer in the language just chosen
        await callback.message.answer(_("Language set: {name}.").format(name=NAMES[callback_data.code]))


async def settings_button(callback: CallbackQuery, callback_data: SettingsCallback, state: FSMContext,
                          session: AsyncSession, user: User, settings: Settings) -> None:
    action, value = callback_data.action, callback_data.value
    if action == "lang":
        await callback.answer()
        await choose_language(callback.message)
    elif action == "tz":
        await callback.answer()
        rows = [[_button(f"{zone} ({_offset(zone)})", "zone", zone)] for zone in ZONES]
        rows.append([_button(_("Another time zone…"), "tz_other")])
        await callback.message.answer(_("Choose your time zone:"),
                                      reply_markup=InlineKeyboardMarkup(inline_keyboard=rows))
    elif action == "tz_other":
        await callback.answer()
        await state.set_state(EditSettings.timezone)
        await callback.message.answer(_("Send the name of your time zone, e.g. Asia/Kuala_Lumpur or Europe/Paris. "
                                        "/cancel to stop."))
    elif action == "zone":
        await set_timezone(session, user.id, value)
        await callback.answer()
        await callback.message.answer(_("Time zone set: {zone}.").format(zone=html.escape(user.timezone)))
    elif action == "hours":
        await callback.answer()
        await state.set_state(EditSettings.hours)
        await callback.message.answer(_("Send your working hours as start-end, e.g. 9-18 or 08:30-17:30. "
                                        "/cancel to stop."))
    elif action == "maps":
        await callback.answer()
        rows = [[_button(map_app_name(navigator), "map", navigator)] for navigator in NAVIGATORS]
        rows.append([_button(_("By my language"), "map", "")])
        await callback.message.answer(_("Which app should /route's links open?"),
                                      reply_markup=InlineKeyboardMarkup(inline_keyboard=rows))
    elif action == "map":
        try:
            await set_navigator(session, user.id, value or None)
        except DomainError:
            await callback.answer()
            return
        await callback.answer()
        await callback.message.edit_text(_("Map app for /route: {app}").format(app=_map_choice(user)))
    elif action == "visits":
        await callback.answer()
        choices = [_button(_("{minutes} min").format(minutes=m), "visit", str(m)) for m in VISIT_CHOICES]
        rows = [choices[:3], choices[3:], [_button(_("The team's default ({minutes} min)").format(
            minutes=settings.route_visit_minutes), "visit", "")]]
        await callback.message.answer(_("How long does a customer visit take you, on average? /route plans your "
                                        "day with it."), reply_markup=InlineKeyboardMarkup(inline_keyboard=rows))
    elif action == "visit" and (value == "" or (value.isascii() and value.isdigit())):
        await set_visit_minutes(session, user.id, int(value) if value else None)  # refused: an alert (bot.errors)
        await callback.answer()
        await callback.message.edit_text(_visit_choice(user, settings))
    elif action == "day" and value.isascii() and value.isdigit():
        await toggle_work_day(session, user.id, int(value))
        await callback.answer()
        await callback.message.edit_text(summary(user, settings), reply_markup=settings_keyboard(user))
    else:
        await callback.answer()


async def typed_timezone(message: Message, state: FSMContext, session: AsyncSession, user: User) -> None:
    await set_timezone(session, user.id, message.text)
    await state.clear()
    await message.answer(_("Time zone set: {zone}.").format(zone=html.escape(user.timezone)))


async def typed_hours(message: Message, state: FSMContext, session: AsyncSession, user: User) -> None:
    start, end = parse_working_hours(message.text[:MAX_INPUT])
    await set_working_hours(session, user.id, start, end)
    await state.clear()
    await message.answer(_("Working hours set: {start}–{end}.").format(start=start.strftime("%H:%M"),
                                                                     end=end.strftime("%H:%M")))



def create_router() -> Router:
    router = Router(name="settings")
    router.message.filter(Registered())
    router.callback_query.filter(Registered())
    router.message.register(show_settings, Command("settings"))
    router.message.register(choose_language, Command("lang"))
    router.callback_query.register(language_chosen, LanguageCallback.filter())
    router.callback_query.register(settings_button, SettingsCallback.filter())
    router.message.register(typed_timezone, StateFilter(EditSettings.timezone), F.text, ~F.text.startswith("/"))
    router.message.register(typed_hours, StateFilter(EditSettings.hours), F.text, ~F.text.startswith("/"))
    router.message.register(text_please, StateFilter(EditSettings.timezone, EditSettings.hours))
    return router
