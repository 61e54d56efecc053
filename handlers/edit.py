"""Changing a customer from its card: ✏️ Edit (one field at a time, dictionary values as buttons) and
🎯 Stage (the relationship stage, with what the stage suggests doing next)."""

from __future__ import annotations

import html

from aiogram import F, Router
from aiogram.filters import StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message
from aiogram.utils.i18n import gettext as _
from sqlalchemy.ext.asyncio import AsyncSession

from bot.callbacks import EditCallback, StageCallback
from bot.filters import ButtonCustomer, Registered
from bot.formatting import day
from bot.labels import stage_label
from bot.settings import Settings
from handlers.card import show_card
from handlers.common import text_please, try_again
from models import ContactStrategy, Customer, PurchaseStrategy, Stage, User, today_in
from services.access import Viewer
from services.contacts import check_mobile
from services.customers import edit_customer, set_stage
from services.dictionaries import entries, strategies
from services.messages import DomainError
from services.parsing import parse_future_date

TEXT_FIELDS = ("name", "short_name", "phone", "address", "notes")  # typed; services check their lengths
DICTIONARIES = ("region", "category", "source", "industry", "scale", "nature")
STRATEGIES = {"contact_strategy": ContactStrategy, "purchase_strategy": PurchaseStrategy}


class EditCustomer(StatesGroup):
    value = State()
    expected = State()
    reason = State()


def field_label(field: str) -> str:
    return {
        "name": _("Name"), "short_name": _("Short name"), "phone": _("Phone"), "address": _("Address"),
        "notes": _("Notes"), "region": _("Region"), "category": _("Category"), "source": _("Source"),
        "industry": _("Industry"), "scale": _("Scale"), "nature": _("Nature"),
        "contact_strategy": _("Contact cycle"), "purchase_strategy": _("Purchase cycle"),
    }.get(field, field)


def stage_advice(stage: str) -> str:
    """What the stage suggests doing next."""
    return {
        Stage.interested: _("Act fast: follow up actively and move them to the next stage."),
        Stage.hesitating: _("Keep talking and learn their needs; do not push products yet."),
        Stage.not_now: _("Keep the relationship warm and get back to them before they expect to buy."),
        Stage.definitely_not: _("Learn why; product objections are passed on to product development."),
        Stage.quoted_no_response: _("Follow up on after-sales, quality and usage; stress value, not just price."),
        Stage.customer: _("Look after them: thank them after each purchase and keep to their contact cycle."),
    }.get(stage, "")


def _edit_button(text: str, customer_id: int, field: str = "", value: str = "") -> InlineKeyboardButton:
    return InlineKeyboardButton(text=text, callback_data=EditCallback(id=customer_id, field=field, value=value).pack())


async def edit_button(callback: CallbackQuery, callback_data: EditCallback, state: FSMContext, session: AsyncSession,
                      user: User, viewer: Viewer, settings: Settings, customer: Customer) -> None:
    field, value = callback_data.field, callback_data.value
    await callback.answer()
    if not field:
        fields = [*TEXT_FIELDS, *DICTIONARIES, *STRATEGIES]
        buttons = [_edit_button(field_label(f), customer.id, f) for f in fields]
        rows = [buttons[i:i + 3] for i in range(0, len(buttons), 3)]
        await callback.message.answer(_("What do you want to change for {name}?").format(
            name=html.escape(customer.name)), reply_markup=InlineKeyboardMarkup(inline_keyboard=rows))
    elif field in TEXT_FIELDS:
        await state.set_state(EditCustomer.value)
        await state.update_data(customer_id=customer.id, field=field)
        current = getattr(customer, field) or "—"
        await callback.message.answer(_("{field} now: {value}\nSend the new value, or /cancel.").format(
            field=field_label(field), value=html.escape(str(current)[:200])))
    elif (field in DICTIONARIES or field in STRATEGIES) and not value:
        if field in DICTIONARIES:
            options = [(e.id, e.label(user.language)) for e in await entries(session, field)]
        else:
            options = [(s.id, s.label(user.language)) for s in await strategies(session, STRATEGIES[field])]
        buttons = [_edit_button(label, customer.id, field, str(entry_id)) for entry_id, label in options]
        rows = [buttons[i:i + 2] for i in range(0, len(buttons), 2)]
        rows.append([_edit_button(_("(none)"), customer.id, field, "0")])
        await callback.message.answer(_("{field} for {name}:").format(field=field_label(field),
                                                                       name=html.escape(customer.name)),
                                      reply_markup=InlineKeyboardMarkup(inline_keyboard=rows))
    elif (field in DICTIONARIES or field in STRATEGIES) and value.isdigit():
        await save(callback.message, session, user, viewer, settings, customer.id, f"{field}_id", int(value) or None)


async def save(message: Message, session: AsyncSession, user: User, viewer: Viewer, settings: Settings,
               customer_id: int, column: str, value: object) -> bool:
    try:
        await edit_customer(session, viewer, customer_id, user_id=user.id, **{column: value})
    except DomainError as refused:
        await message.answer(refused.problem.render(_))
        return False
    await message.answer(_("Saved."))
    await show_card(message, session, user, viewer, settings, customer_id)
    return True


async def typed_value(message: Message, state: FSMContext, session: AsyncSession, user: User, viewer: Viewer,
                      settings: Settings) -> None:
    data = await state.get_data()
    field, text = data["field"], message.text.strip()
    if field == "phone":
        text = check_mobile(text)
    if await save(message, session, user, viewer, settings, data["customer_id"], field, text or None):
        await state.clear()


# --------------------------------------------------------------------------- stage

def _stage_keyboard(customer_id: int) -> InlineKeyboardMarkup:
    buttons = [InlineKeyboardButton(text=stage_label(s), callback_data=StageCallback(id=customer_id, stage=s.value)
                                    .pack()) for s in Stage]
    return InlineKeyboardMarkup(inline_keyboard=[buttons[i:i + 2] for i in range(0, len(buttons), 2)])


def _local_today(user: User):
    return today_in(user.timezone)


async def stage_button(callback: CallbackQuery, callback_data: StageCallback, state: FSMContext,
                       session: AsyncSession, user: User, viewer: Viewer, customer: Customer) -> None:
    await callback.answer()
    stage = callback_data.stage
    if not stage:
        lines = [_("Stage of {name}: {stage}").format(name=html.escape(customer.name), stage=stage_label(customer.stage))]
        if customer.stage == Stage.not_now and customer.expected_purchase_on:
            lines.append(_("Expects to buy around {date}.").format(date=day(customer.expected_purchase_on,
                                                                            user.language)))
        if customer.stage == Stage.definitely_not and customer.lost_reason:
            lines.append(_("Reason: {reason}").format(reason=html.escape(customer.lost_reason)))
        lines += [stage_advice(customer.stage), _("Change it to:")]
        await callback.message.answer("\n".join(lines), reply_markup=_stage_keyboard(customer.id))
        return
    if stage not in {s.value for s in Stage}:
        return
    if stage == Stage.not_now:
        await state.set_state(EditCustomer.expected)
        await state.update_data(customer_id=customer.id)
        await callback.message.answer(_("When do they expect to buy? E.g. 下周, 3.15 or 2026-09-01. /cancel to stop."))
    elif stage == Stage.definitely_not:
        await state.set_state(EditCustomer.reason)
        await state.update_data(customer_id=customer.id)
        await callback.message.answer(_("Why will they not buy? Your words help product development. /cancel to "
                                        "stop."))
    else:
        await _set(callback.message, session, user, viewer, customer.id, stage)


async def _set(message: Message, session: AsyncSession, user: User, viewer: Viewer, customer_id: int, stage: str,
               **values: object) -> bool:
    try:
        await set_stage(session, viewer, customer_id, stage, user_id=user.id, today=_local_today(user), **values)
    except DomainError as refused:
        await message.answer(try_again(refused))
        return False
    await message.answer(_("Stage set: {stage}.").format(stage=stage_label(stage)) + "\n" + stage_advice(stage))
    return True


async def typed_expected(message: Message, state: FSMContext, session: AsyncSession, user: User,
                         viewer: Viewer) -> None:
    data = await state.get_data()
    when = parse_future_date(message.text[:50], today=_local_today(user))
    if await _set(message, session, user, viewer, data["customer_id"], Stage.not_now, expected_purchase_on=when):
        await state.clear()


async def typed_reason(message: Message, state: FSMContext, session: AsyncSession, user: User,
                       viewer: Viewer) -> None:
    data = await state.get_data()
    if await _set(message, session, user, viewer, data["customer_id"], Stage.definitely_not,
                  lost_reason=message.text):
        await state.clear()



def create_router() -> Router:
    router = Router(name="edit")
    router.message.filter(Registered())
    router.callback_query.filter(Registered())
    router.callback_query.register(edit_button, EditCallback.filter(), ButtonCustomer())
    router.callback_query.register(stage_button, StageCallback.filter(), ButtonCustomer())
    not_command = ~F.text.startswith("/")
    router.message.register(typed_value, StateFilter(EditCustomer.value), F.text, not_command)
    router.message.register(typed_expected, StateFilter(EditCustomer.expected), F.text, not_command)
    router.message.register(typed_reason, StateFilter(EditCustomer.reason), F.text, not_command)
    router.message.register(text_please, StateFilter(EditCustomer))
    return router
