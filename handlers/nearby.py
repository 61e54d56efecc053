"""/nearby: share a location, get your customers around it — overdue ones first — one tap from the card."""

from __future__ import annotations

import html

from aiogram import F, Router
from aiogram.enums import ChatType
from aiogram.filters import Command, StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import (
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

from bot.callbacks import CustomerCallback, NearbyCallback
from bot.filters import Registered
from bot.formatting import days
from models import User
from services.access import Viewer
from services.nearby import RADII_KM, Nearby, customers_near


class AskLocation(StatesGroup):
    location = State()


def _distance(km: float) -> str:
    return _("{m} m").format(m=int(round(km * 1000, -1))) if km < 1 else _("{km} km").format(km=f"{km:.1f}")


def _line(item: Nearby, language: str) -> str:
    text = f"{html.escape(item.name)} · {_distance(item.distance_km)}"
    if item.overdue_days:
        text = "⏰ " + text + " · " + _("{duration} overdue").format(duration=days(item.overdue_days, language))
    return text


async def ask(message: Message, state: FSMContext) -> None:
    await state.set_state(AskLocation.location)
    keyboard = ReplyKeyboardMarkup(keyboard=[[KeyboardButton(text=_("📍 Send my location"), request_location=True)]],
                                   resize_keyboard=True, one_time_keyboard=True)
    await message.answer(_("Share your location (the button below, or 📎 → Location) and I will list your customers "
                           "nearby. /cancel to stop."), reply_markup=keyboard)


async def show(message: Message, session: AsyncSession, user: User, viewer: Viewer, latitude: float,
               longitude: float, radius_km: int, *, edit: bool = False) -> None:
    found = await customers_near(session, viewer, latitude, longitude, radius_km=radius_km)
    if found:
        text = "\n".join([_("Your customers within {radius} km, overdue first:").format(radius=radius_km)]
                         + [_line(item, user.language) for item in found])
    else:
        text = _("None of your customers within {radius} km has a known location.").format(radius=radius_km)
    rows = [[InlineKeyboardButton(text=("⏰ " if item.overdue_days else "📇 ") + item.name[:50],
                                  callback_data=CustomerCallback(action="card", id=item.customer_id).pack())]
            for item in found]
    wider = [InlineKeyboardButton(text=_("within {radius} km").format(radius=r), callback_data=NearbyCallback(
        radius=r, lat=round(latitude, 5), lon=round(longitude, 5)).pack()) for r in RADII_KM if r > radius_km]
    if wider:
        rows.append(wider)
    markup = InlineKeyboardMarkup(inline_keyboard=rows)
    if edit:
        await message.edit_text(text, reply_markup=markup)
    else:
        await message.answer(text, reply_markup=markup)


async def shared(message: Message, state: FSMContext, session: AsyncSession, user: User, viewer: Viewer) -> None:
    await state.clear()
    await message.answer(_("Looking around you…"), reply_markup=ReplyKeyboardRemove())
    await show(message, session, user, viewer, message.location.latitude, message.location.longitude, RADII_KM[0])


async def widen(callback: CallbackQuery, callback_data: NearbyCallback, session: AsyncSession, user: User,
                viewer: Viewer) -> None:
    await callback.answer()
    if callback_data.radius not in RADII_KM:
        return
    await show(callback.message, session, user, viewer, callback_data.lat, callback_data.lon, callback_data.radius,
               edit=True)


async def not_location(message: Message) -> None:
    await message.answer(_("Please share a location — or /cancel."))


def create_router() -> Router:
    router = Router(name="nearby")
    router.message.filter(Registered())
    router.callback_query.filter(Registered())
    router.message.register(ask, Command("nearby"))
    router.message.register(shared, StateFilter(AskLocation.location), F.location)
    router.message.register(not_location, StateFilter(AskLocation.location), ~F.text.startswith("/") | ~F.text)
    # A location sent outside any conversation: the same list.
    router.message.register(shared, StateFilter(None), F.location, F.chat.type == ChatType.PRIVATE)
    router.callback_query.register(widen, NearbyCallback.filter())
    return router
