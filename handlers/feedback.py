"""Recording feedback from the card (kind → product → rating → what they said) and resolving complaints."""

from __future__ import annotations

import html

from aiogram import F, Router
from aiogram.filters import StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message
from aiogram.utils.i18n import gettext as _
from sqlalchemy.ext.asyncio import AsyncSession

from bot.callbacks import FeedbackCallback
from bot.filters import ButtonCustomer, Registered
from bot.labels import feedback_label
from handlers.common import buttons_please, new_flow, origin, text_please
from models import Customer, Feedback, FeedbackKind, User
from services.access import Viewer
from services.cards import visible_customer
from services.feedback import check_product, record_feedback, resolve_complaint
from services.messages import DomainError


class GiveFeedback(StatesGroup):
    kind = State()
    product = State()
    rating = State()
    text = State()
    resolution = State()


def _button(text: str, **data: object) -> InlineKeyboardButton:
    return InlineKeyboardButton(text=text, callback_data=FeedbackCallback(**data).pack())


async def start_feedback(callback: CallbackQuery, state: FSMContext, customer: Customer) -> None:
    await state.set_state(GiveFeedback.kind)
    await state.update_data(customer_id=customer.id, flow=new_flow())
    await callback.answer()
    kinds = [_button(feedback_label(k), step="kind", value=k) for k in FeedbackKind]
    await callback.message.answer(_("Feedback from {name}: what kind?").format(name=html.escape(customer.name)),
                                  reply_markup=InlineKeyboardMarkup(inline_keyboard=[kinds[:2], kinds[2:]]))


async def kind_chosen(callback: CallbackQuery, callback_data: FeedbackCallback, state: FSMContext) -> None:
    await callback.answer()
    if await state.get_state() != GiveFeedback.kind.state or callback_data.value not in set(FeedbackKind):
        return
    await state.update_data(kind=callback_data.value)
    await state.set_state(GiveFeedback.product)
    await callback.message.answer(_("Which product is it about?"), reply_markup=InlineKeyboardMarkup(
        inline_keyboard=[[_button(_("no particular product"), step="skip_product")]]))


async def product_typed(message: Message, state: FSMContext) -> None:
    product = check_product(message.text)
    await state.update_data(product=product)
    await ask_rating(message, state)


async def product_skipped(callback: CallbackQuery, state: FSMContext) -> None:
    await callback.answer()
    if await state.get_state() == GiveFeedback.product.state:
        await ask_rating(callback.message, state)


async def ask_rating(message: Message, state: FSMContext) -> None:
    await state.set_state(GiveFeedback.rating)
    stars = [_button("⭐" * n, step="rating", value=str(n)) for n in range(1, 6)]
    await message.answer(_("How satisfied are they, from 1 to 5?"), reply_markup=InlineKeyboardMarkup(
        inline_keyboard=[stars[:3], stars[3:], [_button(_("no rating"), step="rating", value="0")]]))


async def rating_chosen(callback: CallbackQuery, callback_data: FeedbackCallback, state: FSMContext) -> None:
    await callback.answer()
    if await state.get_state() != GiveFeedback.rating.state or not callback_data.value.isdigit():
        return
    await state.update_data(rating=int(callback_data.value) or None)
    await state.set_state(GiveFeedback.text)
    await callback.message.answer(_("What did they say?"))


async def text_typed(message: Message, state: FSMContext, session: AsyncSession, user: User,
                     viewer: Viewer) -> None:
    data = await state.get_data()
    await visible_customer(session, viewer, data["customer_id"])
    feedback = await record_feedback(session, customer_id=data["customer_id"], kind=data["kind"],
                                     text=message.text, product=data.get("product"), rating=data.get("rating"),
                                     user_id=user.id, origin_key=origin(message, data))
    await state.clear()
    if feedback.kind == FeedbackKind.complaint:
        from bot.notify import notify_complaint

        await notify_complaint(session, feedback)
        await message.answer(_("Complaint saved. It stays open on the card until it is resolved."))
    else:
        await message.answer(_("Saved: {kind}.").format(kind=feedback_label(feedback.kind)))


async def start_resolve(callback: CallbackQuery, callback_data: FeedbackCallback, state: FSMContext,
                        session: AsyncSession, viewer: Viewer) -> None:
    complaint = await session.get(Feedback, callback_data.id)
    try:
        if complaint is None or complaint.status != "open":
            raise DomainError("gone")
        await visible_customer(session, viewer, complaint.customer_id)
    except DomainError:
        await callback.answer(_("That complaint is no longer open."), show_alert=True)
        return
    await state.set_state(GiveFeedback.resolution)
    await state.update_data(complaint_id=complaint.id)
    await callback.answer()
    await callback.message.answer(_("What was done to resolve “{text}”?").format(text=html.escape(complaint.text or "")))


async def resolution_typed(message: Message, state: FSMContext, session: AsyncSession, user: User) -> None:
    data = await state.get_data()
    try:
        complaint = await resolve_complaint(session, data["complaint_id"], resolution=message.text, user_id=user.id)
    except DomainError as refused:
        await state.clear()
        await message.answer(refused.problem.render(_))
        return
    await state.clear()
    hours = (complaint.resolved_at - complaint.created_at).total_seconds() / 3600
    await message.answer(_("Complaint resolved after {hours} hours.").format(hours=f"{hours:.1f}"))




def open_complaint_buttons(complaints: list[Feedback]) -> list[list[InlineKeyboardButton]]:
    return [[_button(_("✅ Resolve: {text}").format(text=(c.text or "")[:30]), step="resolve", id=c.id)]
            for c in complaints]


def create_router() -> Router:
    router = Router(name="feedback")
    router.message.filter(Registered())
    router.callback_query.filter(Registered())
    router.callback_query.register(start_feedback, FeedbackCallback.filter(F.step == "start"), ButtonCustomer())
    router.callback_query.register(kind_chosen, FeedbackCallback.filter(F.step == "kind"))
    router.callback_query.register(product_skipped, FeedbackCallback.filter(F.step == "skip_product"))
    router.callback_query.register(rating_chosen, FeedbackCallback.filter(F.step == "rating"))
    router.callback_query.register(start_resolve, FeedbackCallback.filter(F.step == "resolve"))
    text_only = (F.text, ~F.text.startswith("/"))
    router.message.register(product_typed, StateFilter(GiveFeedback.product), *text_only)
    router.message.register(text_typed, StateFilter(GiveFeedback.text), *text_only)
    router.message.register(resolution_typed, StateFilter(GiveFeedback.resolution), *text_only)
    router.message.register(buttons_please, StateFilter(GiveFeedback.kind, GiveFeedback.rating))
    router.message.register(text_please, StateFilter(GiveFeedback))
    return router
