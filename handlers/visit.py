"""Logging a visit or a call from the card, in three steps: pick the kind → send a note (text, a photo,
or a shared location, which makes it a check-in) → pick when the next step is."""

from __future__ import annotations

import html
from datetime import timedelta

from aiogram import F, Router
from aiogram.filters import StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message
from aiogram.utils.i18n import gettext as _
from sqlalchemy.ext.asyncio import AsyncSession

from bot.callbacks import LogCallback, NextStepCallback
from bot.filters import ButtonCustomer, Registered
from bot.formatting import day
from bot.labels import interaction_label
from handlers.common import new_flow, origin
from models import Customer, User, today_in
from services.access import Viewer
from services.cards import visible_customer
from services.interactions import check_note, log_interaction, set_next_step, visible_interaction
from services.messages import DomainError
from services.parsing import parse_future_date


class LogContact(StatesGroup):
    note = State()
    next_date = State()


def next_step_keyboard(interaction_id: int) -> InlineKeyboardMarkup:
    def button(text: str, days: int) -> InlineKeyboardButton:
        return InlineKeyboardButton(text=text, callback_data=NextStepCallback(interaction=interaction_id,
                                                                              days=days).pack())
    return InlineKeyboardMarkup(inline_keyboard=[
        [button(_("in 3 days"), 3), button(_("in a week"), 7), button(_("in 2 weeks"), 14)],
        [button(_("another day…"), -1), button(_("no next step"), 0)],
    ])


def local_today(user: User):
    return today_in(user.timezone)


async def start_log(callback: CallbackQuery, callback_data: LogCallback, state: FSMContext, customer: Customer) -> None:
    await state.set_state(LogContact.note)
    await state.update_data(customer_id=customer.id, kind=callback_data.kind, flow=new_flow())
    await callback.answer()
    await callback.message.answer(_("Logging a {kind} with {name}. Send a short note — text, a photo, or share "
                                    "your location to check in. /cancel to stop.").format(
        kind=interaction_label(callback_data.kind), name=html.escape(customer.name)))


async def note(message: Message, state: FSMContext, session: AsyncSession, user: User, viewer: Viewer) -> None:
    data = await state.get_data()
    summary = message.text or message.caption
    if message.text and message.text.startswith("/"):
        await message.answer(_("Send the note first, or /cancel."))
        return
    check_note(summary)
    latitude = longitude = None
    attachments: list[str] = []
    if message.location:
        latitude, longitude = message.location.latitude, message.location.longitude
    if message.photo:
        attachments.append(message.photo[-1].file_id)
    if not summary and latitude is None and not attachments:
        await message.answer(_("Please send text, a photo or your location — or /cancel."))
        return
    try:
        await visible_customer(session, viewer, data["customer_id"])
        interaction = await log_interaction(session, customer_id=data["customer_id"], kind=data["kind"],
                                            user_id=user.id, summary=summary, latitude=latitude,
                                            longitude=longitude, attachments=attachments,
                                            origin_key=origin(message, data))
    except DomainError as refused:
        await state.clear()
        await message.answer(refused.problem.render(_))
        return
    await state.clear()
    where = _(" (checked in at your location)") if latitude is not None else ""
    await message.answer(_("Saved: {kind}{where}. When is the next step?").format(
        kind=interaction_label(data["kind"]), where=where), reply_markup=next_step_keyboard(interaction.id))


async def pick_next_step(callback: CallbackQuery, callback_data: NextStepCallback, state: FSMContext,
                         session: AsyncSession, user: User, viewer: Viewer) -> None:
    interaction = await visible_interaction(session, viewer, callback_data.interaction)  # refused: bot.errors
    await callback.answer()
    if callback_data.days == -1:
        await state.set_state(LogContact.next_date)
        await state.update_data(interaction_id=interaction.id)
        await callback.message.answer(_("Send the date of the next step, e.g. 明天, 3.25 or 2026-04-01."))
        return
    when = local_today(user) + timedelta(days=callback_data.days) if callback_data.days > 0 else None
    await set_next_step(session, interaction.id, next_step_on=when, user_id=user.id)
    await callback.message.answer(_("Next step on {date}.").format(date=day(when, user.language))
                                  if when else _("OK, no next step."))


async def typed_next_date(message: Message, state: FSMContext, session: AsyncSession, user: User) -> None:
    data = await state.get_data()
    when = parse_future_date(message.text or "", today=local_today(user))
    await set_next_step(session, data["interaction_id"], next_step_on=when, user_id=user.id)
    await state.clear()
    await message.answer(_("Next step on {date}.").format(date=day(when, user.language)))


async def not_a_date(message: Message) -> None:
    await message.answer(_("Send the date as text, e.g. 明天 or 2026-04-01 — or /cancel."))


def create_router() -> Router:
    router = Router(name="visit")
    router.message.filter(Registered())
    router.callback_query.filter(Registered())
    router.callback_query.register(start_log, LogCallback.filter(), ButtonCustomer())
    router.callback_query.register(pick_next_step, NextStepCallback.filter())
    router.message.register(note, StateFilter(LogContact.note))
    router.message.register(typed_next_date, StateFilter(LogContact.next_date), F.text)
    router.message.register(not_a_date, StateFilter(LogContact.next_date))
    return router
