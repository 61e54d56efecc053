"""👥 Contacts on the card: the customer's contact persons (key ones first, phones tap-to-call), mark a key
contact, add one by steps (name → title → mobile), with "is it this one?" for a duplicate."""

from __future__ import annotations

import html

from aiogram import F, Router
from aiogram.filters import StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message
from aiogram.utils.i18n import gettext as _
from sqlalchemy.ext.asyncio import AsyncSession

from bot.callbacks import ContactCallback, CustomerCallback
from bot.filters import Registered
from handlers.common import buttons_please, new_flow, origin, text_please
from models import ContactPerson, User, today_in
from services.access import Viewer
from services.cards import visible_customer
from services.contacts import (
    CONTACT_FIELDS,
    add_contact,
    archive_contact,
    check_mobile,
    check_name,
    contacts_of,
    duplicate_contacts,
    toggle_key,
    update_contact,
)
from services.messages import DomainError
from services.parsing import parse_date

MAX_LISTED = 20


class AddContact(StatesGroup):
    name = State()
    title = State()
    mobile = State()
    confirm = State()


class EditContact(StatesGroup):
    value = State()


def field_label(field: str) -> str:
    return {"name": _("Name"), "title": _("Title"), "mobile": _("Mobile"), "birthday": _("Birthday")}.get(field, field)


def _button(text: str, step: str, id: int = 0, field: str = "") -> InlineKeyboardButton:
    return InlineKeyboardButton(text=text, callback_data=ContactCallback(step=step, id=id, field=field).pack())


def person_line(person: ContactPerson) -> str:
    parts = [("⭐ " if person.is_key else "👤 ") + html.escape(person.name)]
    for value in (person.title, person.mobile, person.office_phone):
        if value:
            parts.append(html.escape(value))
    return " · ".join(parts)


async def list_contacts(message: Message, session: AsyncSession, viewer: Viewer, customer_id: int) -> None:
    customer = await visible_customer(session, viewer, customer_id)
    people = await contacts_of(session, viewer, customer_id)
    lines = [_("<b>{name}</b> — contact persons").format(name=html.escape(customer.name))]
    lines += [person_line(p) for p in people[:MAX_LISTED]] or [_("No contact persons yet.")]
    if people:
        lines.append(_("Tap a name to mark or unmark a key contact."))
    rows = [[_button(("⭐ " if p.is_key else "☆ ") + p.name[:40], "key", p.id), _button("✏️", "edit", p.id)]
            for p in people[:MAX_LISTED]]
    rows.append([_button(_("➕ Add a contact person"), "add", customer.id),
                 InlineKeyboardButton(text=_("📇 Card"), callback_data=CustomerCallback(action="card", id=customer.id)
                                      .pack())])
    await message.answer("\n".join(lines), reply_markup=InlineKeyboardMarkup(inline_keyboard=rows))


async def contact_button(callback: CallbackQuery, callback_data: ContactCallback, state: FSMContext,
                         session: AsyncSession, user: User, viewer: Viewer) -> None:
    step = callback_data.step
    # A refusal (the customer or the contact person is gone or not theirs) is raised by services and
    # answered by bot.errors with what was refused.
    if step == "list":
        await visible_customer(session, viewer, callback_data.id)
        if await state.get_state() == AddContact.confirm.state:
            await state.clear()  # "yes, it is this one": nothing is added
        await callback.answer()
        await list_contacts(callback.message, session, viewer, callback_data.id)
    elif step == "add":
        customer = await visible_customer(session, viewer, callback_data.id)
        await callback.answer()
        await state.set_state(AddContact.name)
        await state.update_data(customer_id=customer.id, flow=new_flow())
        await callback.message.answer(_("New contact person at {name}. Their name? /cancel to stop.").format(
            name=html.escape(customer.name)))
    elif step == "key":
        person = await toggle_key(session, viewer, callback_data.id, user_id=user.id)
        await callback.answer(_("{name} is a key contact now.").format(name=person.name) if person.is_key
                              else _("{name} is no longer a key contact.").format(name=person.name))
        await list_contacts(callback.message, session, viewer, person.customer_id)
    elif step == "edit":
        person = await _person(session, viewer, callback_data.id)
        await callback.answer()
        fields = [_button(field_label(f), "field", person.id, f) for f in CONTACT_FIELDS]
        await callback.message.answer(_("Change what for {name}?").format(name=html.escape(person.name)),
                                      reply_markup=InlineKeyboardMarkup(inline_keyboard=[
                                          fields[:2], fields[2:], [_button(_("🗄 Archive"), "archive", person.id)]]))
    elif step == "field" and callback_data.field in CONTACT_FIELDS:
        person = await _person(session, viewer, callback_data.id)
        await callback.answer()
        await state.set_state(EditContact.value)
        await state.update_data(person_id=person.id, field=callback_data.field)
        current = getattr(person, callback_data.field)
        await callback.message.answer(_("{field} now: {value}\nSend the new value, or /cancel.").format(
            field=field_label(callback_data.field), value=html.escape(str(current)) if current else "—"))
    elif step == "archive":
        person = await _person(session, viewer, callback_data.id)
        if callback_data.field != "yes":
            await callback.answer()
            await callback.message.answer(
                _("Archive {name}? They leave the card and the search; past records keep them.").format(
                    name=html.escape(person.name)),
                reply_markup=InlineKeyboardMarkup(inline_keyboard=[[_button(_("🗄 Archive"), "archive", person.id,
                                                                            "yes")]]))
            return
        await archive_contact(session, viewer, person.id, user_id=user.id)
        await callback.answer(_("Archived."))
        await list_contacts(callback.message, session, viewer, person.customer_id)
    elif step == "skip":
        await callback.answer()
        await skipped(callback.message, state, session, user, viewer)
    elif step == "anyway":
        await callback.answer()
        if await state.get_state() == AddContact.confirm.state:
            await _save(callback.message, state, session, user, viewer)
    else:
        await callback.answer()


async def typed_name(message: Message, state: FSMContext) -> None:
    name = check_name(message.text)
    await state.update_data(name=name)
    await state.set_state(AddContact.title)
    await message.answer(_("{name}'s title (e.g. 采购经理)?").format(name=html.escape(name)),
                         reply_markup=InlineKeyboardMarkup(inline_keyboard=[[_button(_("Skip"), "skip")]]))


async def typed_title(message: Message, state: FSMContext) -> None:
    if len(message.text) > 100:
        await message.answer(_("That is too long: at most {limit} characters.").format(limit=100) + "\n"
                             + _("Try again, or /cancel."))
        return
    await state.update_data(title=message.text.strip())
    await ask_mobile(message, state)


async def ask_mobile(message: Message, state: FSMContext) -> None:
    await state.set_state(AddContact.mobile)
    await message.answer(_("Their mobile number?"),
                         reply_markup=InlineKeyboardMarkup(inline_keyboard=[[_button(_("Skip"), "skip")]]))


async def typed_mobile(message: Message, state: FSMContext, session: AsyncSession, user: User,
                       viewer: Viewer) -> None:
    mobile = check_mobile(message.text)
    await state.update_data(mobile=mobile)
    await _check_then_save(message, state, session, user, viewer)


async def skipped(message: Message, state: FSMContext, session: AsyncSession, user: User, viewer: Viewer) -> None:
    current = await state.get_state()
    if current == AddContact.title.state:
        await ask_mobile(message, state)
    elif current == AddContact.mobile.state:
        await _check_then_save(message, state, session, user, viewer)


async def _check_then_save(message: Message, state: FSMContext, session: AsyncSession, user: User,
                           viewer: Viewer) -> None:
    data = await state.get_data()
    same = await duplicate_contacts(session, viewer, data["customer_id"], name=data["name"], mobile=data.get("mobile"))
    if same:
        await state.set_state(AddContact.confirm)
        lines = [_("Is it this one? Already listed:")] + [person_line(p) for p in same]
        await message.answer("\n".join(lines), reply_markup=InlineKeyboardMarkup(inline_keyboard=[[
            _button(_("➕ No, add a new one"), "anyway"),
            InlineKeyboardButton(text=_("Yes — do not add"), callback_data=ContactCallback(
                step="list", id=data["customer_id"]).pack())]]))
        return
    await _save(message, state, session, user, viewer)


async def _save(message: Message, state: FSMContext, session: AsyncSession, user: User, viewer: Viewer) -> None:
    data = await state.get_data()
    await state.clear()
    try:
        person = await add_contact(session, viewer, data["customer_id"], name=data["name"], title=data.get("title"),
                                   mobile=data.get("mobile"), user_id=user.id, origin_key=origin(message, data))
    except DomainError as refused:
        await message.answer(refused.problem.render(_))
        return
    await message.answer(_("Saved: {person}.").format(person=person_line(person)))
    await list_contacts(message, session, viewer, person.customer_id)


async def _person(session: AsyncSession, viewer: Viewer, person_id: int) -> ContactPerson:
    person = await session.get(ContactPerson, person_id)
    if person is None or person.archived_at is not None:
        raise DomainError("gone")
    await visible_customer(session, viewer, person.customer_id)
    return person


async def typed_change(message: Message, state: FSMContext, session: AsyncSession, user: User,
                       viewer: Viewer) -> None:
    data = await state.get_data()
    field, text = data["field"], message.text.strip()[:200]
    today = today_in(user.timezone)
    value: object = parse_date(text, today=today) if field == "birthday" else text
    person = await update_contact(session, viewer, data["person_id"], user_id=user.id, today=today,
                                  **{field: value})
    await state.clear()
    await message.answer(_("Saved: {person}.").format(person=person_line(person)))
    await list_contacts(message, session, viewer, person.customer_id)




def create_router() -> Router:
    router = Router(name="contacts")
    router.message.filter(Registered())
    router.callback_query.filter(Registered())
    router.callback_query.register(contact_button, ContactCallback.filter())
    not_command = ~F.text.startswith("/")
    router.message.register(typed_name, StateFilter(AddContact.name), F.text, not_command)
    router.message.register(typed_title, StateFilter(AddContact.title), F.text, not_command)
    router.message.register(typed_mobile, StateFilter(AddContact.mobile), F.text, not_command,
                            flags={"skippable": True})
    router.message.register(typed_change, StateFilter(EditContact.value), F.text, not_command)
    router.message.register(buttons_please, StateFilter(AddContact.confirm))
    router.message.register(text_please, StateFilter(AddContact, EditContact))
    return router
