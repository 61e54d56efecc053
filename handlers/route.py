"""/route ("plan my day"): share where you are (or start at the first visit) and get today's must-visit
customers as a numbered route with one-tap navigation links and a map. The rules are services.route."""

from __future__ import annotations

import asyncio
import html
from functools import partial

from aiogram import F, Router
from aiogram.filters import Command, StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import (
    BufferedInputFile,
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    KeyboardButton,
    Message,
    ReplyKeyboardMarkup,
    ReplyKeyboardRemove,
)
from aiogram.utils.i18n import gettext as _
from sqlalchemy.ext.asyncio import AsyncSession

from bot.background import Background
from bot.callbacks import RouteCallback
from bot.filters import Registered
from bot.labels import map_app_name
from bot.settings import Settings
from models import User, utcnow
from services.route import (
    Plan,
    Today,
    navigation_url,
    plan_work,
    route_map,
    todays_stops,
    users_navigator,
    visit_minutes_for,
    working_window,
)

LISTED = 15  # names listed apart (dropped, without coordinates) before "and N more"


class RouteAsk(StatesGroup):
    start = State()


def _first_visit_button() -> str:
    return _("▶️ Start at my first visit")


def _names(names: list[str]) -> str:
    shown = ", ".join(html.escape(n) for n in names[:LISTED])
    if len(names) > LISTED:
        shown += " " + _("and {count} more").format(count=len(names) - LISTED)
    return shown


def _unplaced(today: Today) -> list[str]:
    if not today.unplaced:
        return []
    return ["", _("📍 Due today, but without a location ({count}): {names}").format(
        count=len(today.unplaced), names=_names([name for _id, name in today.unplaced])),
        _("A visit check-in with your location puts a customer on the map; an admin can also import their "
          "coordinates (latitude / longitude columns in the customer import).")]


async def ask(message: Message, state: FSMContext, session: AsyncSession, user: User) -> None:
    today = await todays_stops(session, user, utcnow())
    if not today.stops:
        lines = [_("No customer you must visit today has a known location.") if today.unplaced
                 else _("Nothing to visit today: no customer follow-up is due. /today shows your reminders.")]
        await message.answer("\n".join(lines + _unplaced(today)))
        return
    await state.set_state(RouteAsk.start)
    keyboard = ReplyKeyboardMarkup(keyboard=[[KeyboardButton(text=_("📍 Send my location"), request_location=True)],
                                             [KeyboardButton(text=_first_visit_button())]],
                                   resize_keyboard=True, one_time_keyboard=True)
    await message.answer(_("{count} customers to visit today. Where do you start? Share your location (the button "
                           "below), or start at the most important one. /cancel to stop.").format(
        count=len(today.stops) + len(today.unplaced)), reply_markup=keyboard)


def _reply(plan: Plan, today: Today, user: User, end_text: str) -> tuple[str, InlineKeyboardMarkup | None]:
    navigator = users_navigator(user)
    app = map_app_name(navigator)
    lines = []
    if plan.visits:
        lines.append(_("🗺 Your route for today: {count} visits, {km} km of driving, done by {end}.").format(
            count=len(plan.visits), km=f"{plan.km:.1f}", end=plan.visits[-1].leave.strftime("%H:%M")))
        for number, visit in enumerate(plan.visits, start=1):
            lines.append(_("{number}. {time} {name} · {km} km").format(
                number=number, time=visit.arrive.strftime("%H:%M"), name=html.escape(visit.stop.name),
                km=f"{visit.km:.1f}"))
        lines.append(_("The buttons open {app} at each customer.").format(app=app))
    else:
        lines.append(_("None of today's visits fits in your working hours (until {end}).").format(end=end_text))
    if plan.dropped:
        lines += ["", _("⏳ Left out, they do not fit before {end} ({count}): {names}").format(
            end=end_text, count=len(plan.dropped), names=_names([s.name for s in plan.dropped]))]
    lines += _unplaced(today)
    rows = [[InlineKeyboardButton(text=f"{number}. {visit.stop.name}"[:60], url=navigation_url(visit.stop, navigator))]
            for number, visit in enumerate(plan.visits, start=1)]
    return "\n".join(lines), InlineKeyboardMarkup(inline_keyboard=rows) if rows else None


async def _plan(message: Message, state: FSMContext, session: AsyncSession, user: User, settings: Settings,
                background: Background, start: tuple[float, float] | None) -> None:
    await state.clear()
    now = utcnow()
    begin, end = working_window(user, now)
    end_text = end.strftime("%H:%M")
    if begin >= end:
        await message.answer(_("Your working day is over (it ends at {end}); /route plans the rest of a working "
                               "day. /settings changes your working hours.").format(end=end_text),
                             reply_markup=ReplyKeyboardRemove())
        return
    await message.answer(_("Planning your route…"), reply_markup=ReplyKeyboardRemove())
    today = await todays_stops(session, user, now)
    # The solver runs for up to a second: in a worker process (bot.background), so other users are not kept
    # waiting (in a thread it shared the interpreter lock with the bot's loop).
    plan = await background.run(partial(plan_work, today.stops, start, begin, end,
                                        visit_minutes_for(user, settings.route_visit_minutes), settings.route_speed_kmh),
                                lane="route")
    text, markup = _reply(plan, today, user, end_text)
    if plan.visits:
        png = await asyncio.to_thread(route_map, plan, _("Today's route"),
                                      start_label=_("you are here") if start else "", dropped_label=_("left out"))
        await message.answer_photo(BufferedInputFile(png, "route.png"))
    await message.answer(text, reply_markup=markup)


async def from_location(message: Message, state: FSMContext, session: AsyncSession, user: User,
                        settings: Settings, background: Background) -> None:
    await _plan(message, state, session, user, settings, background,
                (message.location.latitude, message.location.longitude))


async def from_text(message: Message, state: FSMContext, session: AsyncSession, user: User,
                    settings: Settings, background: Background) -> None:
    if message.text == _first_visit_button():
        await _plan(message, state, session, user, settings, background, None)
    else:
        await message.answer(_("Share your location, or tap “{button}” — or /cancel.").format(
            button=_first_visit_button()))


async def from_button(callback: CallbackQuery, state: FSMContext, session: AsyncSession, user: User) -> None:
    """"🗺 Plan my route" under /today or the morning digest."""
    await callback.answer()
    if callback.message is not None:
        await ask(callback.message, state, session, user)


def create_router() -> Router:
    router = Router(name="route")
    router.message.filter(Registered())
    router.callback_query.filter(Registered())
    router.message.register(ask, Command("route"))
    router.message.register(from_location, StateFilter(RouteAsk.start), F.location)
    router.message.register(from_text, StateFilter(RouteAsk.start), ~F.text.startswith("/") | ~F.text)
    router.callback_query.register(from_button, RouteCallback.filter())
    return router
