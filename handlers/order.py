"""Recording an order the rep took: amount → products → date, then the customer's totals."""

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

from bot.callbacks import OrderCallback
from bot.filters import ButtonCustomer, Registered
from bot.formatting import day, money
from bot.settings import Settings
from handlers.common import new_flow, origin, text_please
from handlers.visit import local_today
from models import Customer, User
from services.access import Viewer
from services.cards import visible_customer
from services.parsing import parse_amount_cents, parse_date
from services.purchases import check_order_amount, check_products, record_purchase


class RecordOrder(StatesGroup):
    amount = State()
    products = State()
    when = State()


async def start_order(callback: CallbackQuery, state: FSMContext, customer: Customer) -> None:
    await state.set_state(RecordOrder.amount)
    await state.update_data(customer_id=customer.id, flow=new_flow())
    await callback.answer()
    await callback.message.answer(_("New order for {name}. How much? (e.g. 12,800 or 1.2万) /cancel to stop.")
                                  .format(name=html.escape(customer.name)))


async def amount(message: Message, state: FSMContext) -> None:
    cents = check_order_amount(parse_amount_cents(message.text or ""))
    await state.update_data(amount_cents=cents)
    await state.set_state(RecordOrder.products)
    skip = InlineKeyboardMarkup(inline_keyboard=[[InlineKeyboardButton(
        text=_("skip"), callback_data=OrderCallback(step="skip_products").pack())]])
    await message.answer(_("What was ordered?"), reply_markup=skip)


async def products(message: Message, state: FSMContext) -> None:
    ordered = check_products(message.text)
    await state.update_data(products=ordered)
    await ask_date(message, state)


async def skip_products(callback: CallbackQuery, state: FSMContext) -> None:
    await callback.answer()
    if await state.get_state() != RecordOrder.products.state:
        return  # a stale button from an order that is over
    await ask_date(callback.message, state)


async def ask_date(message: Message, state: FSMContext) -> None:
    await state.set_state(RecordOrder.when)
    days = InlineKeyboardMarkup(inline_keyboard=[[
        InlineKeyboardButton(text=_("today"), callback_data=OrderCallback(step="day", days_ago=0).pack()),
        InlineKeyboardButton(text=_("yesterday"), callback_data=OrderCallback(step="day", days_ago=1).pack()),
    ]])
    await message.answer(_("When was it ordered? Tap a day or type a date (3.15, 2026-03-15)."), reply_markup=days)


async def save(message: Message, state: FSMContext, session: AsyncSession, user: User, viewer: Viewer,
               settings: Settings, when) -> None:
    data = await state.get_data()
    customer = await visible_customer(session, viewer, data["customer_id"])
    await record_purchase(session, customer_id=customer.id, purchased_on=when, amount_cents=data["amount_cents"],
                          products=data.get("products"), user_id=user.id, today=local_today(user),
                          origin_key=origin(message, data))
    await state.clear()
    await message.answer(_("Saved: order of {amount} on {date}. {name} now has {count} orders, {total} in total.").format(
        amount=money(data["amount_cents"], settings.currency, user.language), date=day(when, user.language),
        name=html.escape(customer.short_name or customer.name), count=customer.txn_count,
        total=money(customer.txn_amount_cents, settings.currency, user.language)))


async def day_button(callback: CallbackQuery, callback_data: OrderCallback, state: FSMContext, **data) -> None:
    await callback.answer()
    if await state.get_state() != RecordOrder.when.state:
        return
    when = local_today(data["user"]) - timedelta(days=callback_data.days_ago)
    await save(callback.message, state, data["session"], data["user"], data["viewer"], data["settings"], when)


async def typed_date(message: Message, state: FSMContext, session: AsyncSession, user: User, viewer: Viewer,
                     settings: Settings) -> None:
    when = parse_date(message.text or "", today=local_today(user))
    await save(message, state, session, user, viewer, settings, when)



def create_router() -> Router:
    router = Router(name="order")
    router.message.filter(Registered())
    router.callback_query.filter(Registered())
    router.callback_query.register(start_order, OrderCallback.filter(F.step == "start"), ButtonCustomer())
    router.callback_query.register(skip_products, OrderCallback.filter(F.step == "skip_products"))
    router.callback_query.register(day_button, OrderCallback.filter(F.step == "day"))
    for step, handler in ((RecordOrder.amount, amount), (RecordOrder.products, products),
                          (RecordOrder.when, typed_date)):
        router.message.register(handler, StateFilter(step), F.text, ~F.text.startswith("/"))
    router.message.register(text_please, StateFilter(RecordOrder))
    return router
