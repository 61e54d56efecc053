"""Creating a customer by guided steps: name → (is it one of these?) → phone → region → stage → contact
cycle. Duplicates are caught first: a near-identical name or the same phone asks "is it this one?"."""

from __future__ import annotations

import html

from aiogram import F, Router
from aiogram.filters import Command, CommandObject, StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message
from aiogram.utils.i18n import gettext as _
from sqlalchemy.ext.asyncio import AsyncSession

from bot.callbacks import CustomerCallback, NewCustomerCallback
from bot.filters import Registered
from bot.labels import stage_label
from bot.settings import Settings
from handlers.card import show_card
from handlers.common import buttons_please, new_flow, origin, text_please
from models import ContactStrategy, Stage, User
from services.access import Viewer
from services.contacts import check_mobile
from services.customers import Duplicate, create_customer, possible_duplicates
from services.dictionaries import entries, strategies
from services.lookup import LookupIndex
from services.messages import DomainError

LAST_QUERY = "last_query"  # FSM data: the text of the last search that found nothing


class NewCustomer(StatesGroup):
    name = State()
    confirm = State()
    phone = State()
    region = State()
    stage = State()
    strategy = State()


def _button(text: str, step: str, value: str = "") -> InlineKeyboardButton:
    return InlineKeyboardButton(text=text, callback_data=NewCustomerCallback(step=step, value=value).pack())


def _rows(buttons: list[InlineKeyboardButton], width: int = 2) -> list[list[InlineKeyboardButton]]:
    return [buttons[i:i + width] for i in range(0, len(buttons), width)]


def create_button(query: str) -> InlineKeyboardMarkup:
    """Under "no customer matches": start creating one with that name."""
    return InlineKeyboardMarkup(inline_keyboard=[[_button(_("➕ New customer “{name}”").format(name=query[:30]),
                                                          "start")]])


async def new_command(message: Message, command: CommandObject, state: FSMContext, index: LookupIndex,
                      viewer: Viewer) -> None:
    await state.clear()
    if command.args and command.args.strip():
        await take_name(message, command.args, state, index, viewer)
        return
    await state.set_state(NewCustomer.name)
    await message.answer(_("New customer. Send its full name, e.g. 广州市人易软件技术有限公司. /cancel to stop."))


async def start_from_search(callback: CallbackQuery, state: FSMContext, index: LookupIndex, viewer: Viewer) -> None:
    query = (await state.get_data()).get(LAST_QUERY)
    await callback.answer()
    await state.clear()
    if not query:
        await state.set_state(NewCustomer.name)
        await callback.message.answer(_("New customer. Send its full name, e.g. 广州市人易软件技术有限公司. "
                                        "/cancel to stop."))
        return
    await take_name(callback.message, query, state, index, viewer)


def _duplicates_text(duplicates: list[Duplicate], viewer: Viewer) -> tuple[str, list[list[InlineKeyboardButton]]]:
    visible = [d for d in duplicates if viewer.can_see(d.owner_id)]
    hidden = len(duplicates) - len(visible)
    lines = [_("This may already be in the CRM. Is it one of these?")] if visible else []
    if hidden:
        lines.append(_("{count} similar customer(s) belong to colleagues; ask your manager before adding "
                       "another.").format(count=hidden))
    rows = [[InlineKeyboardButton(text="📇 " + d.name[:60], callback_data=CustomerCallback(action="card",
                                                                                          id=d.customer_id).pack())]
            for d in visible[:5]]
    return "\n".join(lines), rows


async def take_name(message: Message, name: str, state: FSMContext, index: LookupIndex, viewer: Viewer) -> None:
    name = name.strip()
    if not name or len(name) > 200:
        await state.set_state(NewCustomer.name)
        await message.answer(_("A customer's name has 1 to 200 characters. Send the name, or /cancel."))
        return
    if index.loading:  # duplicates cannot be checked yet (services.lookup rule 6)
        await state.clear()
        await message.answer(_("The customer list is still loading after a restart, so I cannot check yet "
                               "whether “{name}” is already in it. Try again in a minute or two.").format(
                                   name=html.escape(name)))
        return
    await state.update_data(name=name, flow=new_flow())
    duplicates = possible_duplicates(index, name=name)
    if duplicates:
        await state.set_state(NewCustomer.confirm)
        text, rows = _duplicates_text(duplicates, viewer)
        rows.append([_button(_("➕ No, it is a new customer"), "anyway")])
        await message.answer(text, reply_markup=InlineKeyboardMarkup(inline_keyboard=rows))
        return
    await ask_phone(message, state, name)


async def ask_phone(message: Message, state: FSMContext, name: str) -> None:
    await state.set_state(NewCustomer.phone)
    await message.answer(_("“{name}”: its main phone number?").format(name=html.escape(name)),
                         reply_markup=InlineKeyboardMarkup(inline_keyboard=[[_button(_("Skip"), "skip_phone")]]))


async def typed_name(message: Message, state: FSMContext, index: LookupIndex, viewer: Viewer) -> None:
    await take_name(message, message.text, state, index, viewer)


async def anyway(callback: CallbackQuery, state: FSMContext, session: AsyncSession, user: User) -> None:
    data = await state.get_data()
    current = await state.get_state()
    await callback.answer()
    if current == NewCustomer.confirm.state:
        await ask_phone(callback.message, state, data["name"])
    elif current == NewCustomer.phone.state and data.get("phone"):
        await ask_region(callback.message, state, session, user.language)


async def typed_phone(message: Message, state: FSMContext, session: AsyncSession, index: LookupIndex,
                      viewer: Viewer, user: User) -> None:
    phone = check_mobile(message.text)
    await state.update_data(phone=phone)
    duplicates = possible_duplicates(index, phone=phone)
    if duplicates:
        text, rows = _duplicates_text(duplicates, viewer)
        rows.append([_button(_("➕ No, it is a new customer"), "anyway")])
        await message.answer(_("That number is already in the CRM.") + "\n" + text,
                             reply_markup=InlineKeyboardMarkup(inline_keyboard=rows))
        return
    await ask_region(message, state, session, user.language)


async def skip_phone(callback: CallbackQuery, state: FSMContext, session: AsyncSession, user: User) -> None:
    await callback.answer()
    if await state.get_state() != NewCustomer.phone.state:
        return
    await state.update_data(phone=None)
    await ask_region(callback.message, state, session, user.language)


async def ask_region(message: Message, state: FSMContext, session: AsyncSession, language: str) -> None:
    await state.set_state(NewCustomer.region)
    regions = [_button(e.label(language), "region", str(e.id)) for e in await entries(session, "region")]
    await message.answer(_("Which region?"), reply_markup=InlineKeyboardMarkup(
        inline_keyboard=_rows(regions, 3) + [[_button(_("Skip"), "region", "0")]]))


async def picked(callback: CallbackQuery, callback_data: NewCustomerCallback, state: FSMContext,
                 session: AsyncSession, user: User, viewer: Viewer, settings: Settings) -> None:
    step, value, current = callback_data.step, callback_data.value, await state.get_state()
    await callback.answer()
    if step == "region" and current == NewCustomer.region.state and value.isdigit():
        await state.update_data(region_id=int(value) or None)
        await state.set_state(NewCustomer.stage)
        stages = [_button(stage_label(s), "stage", s.value) for s in Stage]
        await callback.message.answer(_("Where do things stand with them?"),
                                      reply_markup=InlineKeyboardMarkup(inline_keyboard=_rows(stages)))
    elif step == "stage" and current == NewCustomer.stage.state and value in {s.value for s in Stage}:
        await state.update_data(stage=value)
        await state.set_state(NewCustomer.strategy)
        buttons = [_button(s.label(user.language), "strategy", str(s.id))
                   for s in await strategies(session, ContactStrategy)]
        await callback.message.answer(_("How often should they be contacted?"), reply_markup=InlineKeyboardMarkup(
            inline_keyboard=_rows(buttons) + [[_button(_("Skip"), "strategy", "0")]]))
    elif step == "strategy" and current == NewCustomer.strategy.state and value.isdigit():
        data = await state.get_data()
        try:
            customer = await create_customer(session, user_id=user.id, name=data["name"], phone=data.get("phone"),
                                             region_id=data.get("region_id"), stage=data["stage"],
                                             contact_strategy_id=int(value) or None, owner_id=user.id,
                                             origin_key=origin(callback.message, data))
        except DomainError as refused:
            await state.clear()
            await callback.message.answer(refused.problem.render(_))
            return
        await state.clear()
        await callback.message.answer(_("Created. Add contact persons and details from the card."))
        await show_card(callback.message, session, user, viewer, settings, customer.id)




def create_router() -> Router:
    router = Router(name="new_customer")
    router.message.filter(Registered())
    router.callback_query.filter(Registered())
    router.message.register(new_command, Command("new"))
    router.callback_query.register(start_from_search, NewCustomerCallback.filter(F.step == "start"))
    router.callback_query.register(anyway, NewCustomerCallback.filter(F.step == "anyway"))
    router.callback_query.register(skip_phone, NewCustomerCallback.filter(F.step == "skip_phone"))
    router.callback_query.register(picked, NewCustomerCallback.filter())
    not_command = ~F.text.startswith("/")
    router.message.register(typed_name, StateFilter(NewCustomer.name), F.text, not_command)
    router.message.register(typed_phone, StateFilter(NewCustomer.phone), F.text, not_command,
                            flags={"skippable": True})
    router.message.register(text_please, StateFilter(NewCustomer.name, NewCustomer.phone))
    router.message.register(buttons_please, StateFilter(NewCustomer.confirm, NewCustomer.region, NewCustomer.stage,
                                                    NewCustomer.strategy))
    return router
