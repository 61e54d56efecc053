"""Business card → contact in one photo: the rep sends a photo of a card (名片) — or the picture as a file —,
the bot reads it (offline, in the worker process: bot.background) and shows what it read as an editable
summary: ✅ save, ✏️ fix a field, ✖️ cancel. Saving matches the company against the customers first ("add to
this customer?"), else creates the customer (with the stage question, as /new does)."""

from __future__ import annotations

import html
import logging
from functools import partial

from aiogram import Bot, F, Router
from aiogram.enums import ChatType
from aiogram.exceptions import TelegramAPIError
from aiogram.filters import StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message
from aiogram.utils.i18n import gettext as _
from aiohttp import ClientError
from sqlalchemy.ext.asyncio import AsyncSession

from bot.background import Background
from bot.callbacks import NameCardCallback
from bot.filters import Registered
from bot.labels import stage_label
from bot.settings import Settings
from handlers.card import show_card
from handlers.common import buttons_please, new_flow, origin, text_please
from models import Stage, User
from services.access import Viewer
from services.contacts import duplicate_contacts
from services.lookup import LookupIndex
from services.messages import DomainError
from services.namecards import (
    FIELDS,
    CardFields,
    card_matches,
    check_field,
    check_ready,
    read_card_work,
    save_as_new_customer,
    save_to_customer,
)
from services.ocr import MAX_BYTES

log = logging.getLogger("fieldcrm.namecard")
READ_SECONDS = 60  # the longest a rep waits for a reading (one card takes a second or two)
IMAGE_TYPES = ("image/jpeg", "image/png", "image/webp", "image/bmp", "image/tiff", "image/gif")


class ReadCard(StatesGroup):
    review = State()  # the summary is shown
    value = State()  # waiting for the new value of one field
    customer = State()  # "add to one of these customers?"
    stage = State()  # a new customer's stage


def field_label(field: str) -> str:
    return {"company": _("🏢 Company"), "name": _("👤 Name"), "title": _("💼 Title"), "mobile": _("📱 Mobile"),
            "office": _("☎️ Office phone"), "fax": _("📠 Fax"), "email": _("✉️ E-mail"),
            "website": _("🌐 Website"), "address": _("📍 Address")}[field]


def _button(text: str, action: str, **data: object) -> InlineKeyboardButton:
    return InlineKeyboardButton(text=text, callback_data=NameCardCallback(action=action, **data).pack())


def summary(card: CardFields) -> tuple[str, InlineKeyboardMarkup]:
    lines = [_("📇 <b>Read from the card</b> — check it, fix what was misread, then save:")]
    lines += [f"{field_label(f)}: {html.escape(getattr(card, f)) if getattr(card, f) else '—'}" for f in FIELDS]
    keyboard = InlineKeyboardMarkup(inline_keyboard=[
        [_button(_("✅ Save"), "save"), _button(_("✏️ Fix a field"), "fix")],
        [_button(_("✖️ Cancel"), "cancel")]])
    return "\n".join(lines), keyboard


def _picture(message: Message) -> tuple[str, int | None]:
    if message.photo:
        biggest = message.photo[-1]
        return biggest.file_id, biggest.file_size
    return message.document.file_id, message.document.file_size


def _too_large() -> str:
    return _("That image is too large; send a photo of the card (up to {limit} MB).").format(
        limit=MAX_BYTES // 1024 // 1024)


async def card_photo(message: Message, bot: Bot, state: FSMContext, background: Background) -> None:
    """A photo (or an image sent as a file) outside any other conversation: read it as a business card."""
    file_id, size = _picture(message)
    if not file_id:
        await message.answer(_("That photo cannot be downloaded. Send it again."))
        return
    if size and size > MAX_BYTES:
        await message.answer(_too_large())
        return
    await state.clear()
    await message.answer(_("📇 Reading the card…"))
    try:
        file = await bot.get_file(file_id)
        if file.file_size and file.file_size > MAX_BYTES:
            await message.answer(_too_large())
            return
        data = (await bot.download_file(file.file_path, timeout=30)).getvalue() if file.file_path else b""
    except (TelegramAPIError, ClientError, TimeoutError, OSError) as failed:  # Telegram's answer, the download
        log.warning("a card photo could not be downloaded: %s", failed)
        data = b""
    if not data:
        await message.answer(_("I could not download that photo from Telegram. Send it again in a moment."))
        return
    try:
        # Read in the worker process (bot.background): seconds of work that would otherwise hold every
        # other user's replies.
        # A reading stuck past READ_SECONDS has its worker ended (bot.background), so the next card — this
        # rep's or another's — is not queued behind it.
        card = await background.run(partial(read_card_work, data), lane="cards", timeout=READ_SECONDS)
    except TimeoutError:
        await message.answer(_("Reading that photo took too long. Send a sharper photo taken closer to the card."))
        return
    except DomainError as refused:
        await message.answer(refused.problem.render(_))
        return
    await state.set_state(ReadCard.review)
    await state.update_data(card=card.as_dict(), flow=new_flow())
    text, keyboard = summary(card)
    await message.answer(text, reply_markup=keyboard)


async def _card(state: FSMContext) -> CardFields:
    return CardFields.from_dict((await state.get_data()).get("card") or {})


async def _show(message: Message, state: FSMContext) -> None:
    await state.set_state(ReadCard.review)
    text, keyboard = summary(await _card(state))
    await message.answer(text, reply_markup=keyboard)


async def on_button(callback: CallbackQuery, callback_data: NameCardCallback, state: FSMContext,
                    session: AsyncSession, user: User, viewer: Viewer, index: LookupIndex,
                    settings: Settings) -> None:
    action, current = callback_data.action, await state.get_state()
    if current is None or not current.startswith(ReadCard.__name__ + ":"):
        await callback.answer(_("That card is no longer open. Send the photo again."), show_alert=True)
        return
    if action == "cancel":
        await state.clear()
        await callback.answer()
        await callback.message.answer(_("Cancelled. Nothing was saved."))
    elif action == "back":
        await callback.answer()
        await _show(callback.message, state)
    elif action == "fix":
        await callback.answer()
        await state.set_state(ReadCard.review)
        buttons = [_button(field_label(f), "field", field=f) for f in FIELDS]
        rows = [buttons[i:i + 3] for i in range(0, len(buttons), 3)] + [[_button(_("◀ Back"), "back")]]
        await callback.message.answer(_("Which field?"), reply_markup=InlineKeyboardMarkup(inline_keyboard=rows))
    elif action == "field" and callback_data.field in FIELDS:
        await callback.answer()
        card = await _card(state)
        await state.set_state(ReadCard.value)
        await state.update_data(field=callback_data.field)
        now = getattr(card, callback_data.field)
        await callback.message.answer(_("{field} now: {value}\nSend the new value (- leaves it empty), or /cancel.")
                                      .format(field=field_label(callback_data.field),
                                              value=html.escape(now) if now else "—"))
    elif action == "save" and current == ReadCard.review.state:
        await callback.answer()
        await _offer_customers(callback.message, state, await _card(state), index, viewer)
    elif action == "to" and current == ReadCard.customer.state:
        await _add_to_customer(callback, state, session, user, viewer, settings, callback_data.id,
                               anyway=callback_data.anyway)
    elif action == "new" and current == ReadCard.customer.state:
        await callback.answer()
        await _ask_stage(callback.message, state)
    elif action == "stage" and current == ReadCard.stage.state and callback_data.stage:
        await callback.answer()
        data = await state.get_data()
        customer, person = await save_as_new_customer(session, viewer, await _card(state), stage=callback_data.stage,
                                                      user_id=user.id, origin_key=origin(callback.message, data))
        await state.clear()
        await callback.message.answer(_("Saved: new customer {customer} with {person}.").format(
            customer=html.escape(customer.name), person=html.escape(person.name)))
        await show_card(callback.message, session, user, viewer, settings, customer.id)
    else:
        await callback.answer(_("That button belongs to an earlier step; use the latest message."))


async def _offer_customers(message: Message, state: FSMContext, card: CardFields, index: LookupIndex,
                           viewer: Viewer) -> None:
    check_ready(card)
    if index.loading:  # matches cannot be checked yet (services.lookup rule 6)
        await message.answer(_("The customer list is still loading after a restart, so I cannot check yet "
                               "whether this company is in it. Tap ✅ Save again in a minute or two."))
        return
    matches = card_matches(index, card)
    visible = [m for m in matches if viewer.can_see(m.owner_id)]
    hidden = len(matches) - len(visible)
    if not visible and not hidden:
        await _ask_stage(message, state)
        return
    await state.set_state(ReadCard.customer)
    lines = [_("Add {name} to one of these customers?").format(name=html.escape(card.name))] if visible else []
    if hidden:
        lines.append(_("{count} similar customer(s) belong to colleagues; ask your manager before adding "
                       "another.").format(count=hidden))
    rows = [[_button("📇 " + m.name[:60], "to", id=m.customer_id)] for m in visible[:5]]
    if card.company:
        rows.append([_button(_("➕ New customer “{name}”").format(name=card.company[:30]), "new")])
    rows.append([_button(_("✏️ Fix a field"), "fix"), _button(_("✖️ Cancel"), "cancel")])
    await message.answer("\n".join(lines), reply_markup=InlineKeyboardMarkup(inline_keyboard=rows))


async def _ask_stage(message: Message, state: FSMContext) -> None:
    card = await _card(state)
    if not card.company:
        await state.set_state(ReadCard.review)
        await message.answer(_("The card has no company yet: fix the company first."),
                             reply_markup=InlineKeyboardMarkup(inline_keyboard=[
                                 [_button(_("✏️ Fix a field"), "fix"), _button(_("✖️ Cancel"), "cancel")]]))
        return
    await state.set_state(ReadCard.stage)
    stages = [_button(stage_label(s), "stage", stage=s.value) for s in Stage]
    await message.answer(_("New customer “{name}”. Where do things stand with them?").format(
        name=html.escape(card.company)),
        reply_markup=InlineKeyboardMarkup(inline_keyboard=[stages[i:i + 2] for i in range(0, len(stages), 2)]
                                          + [[_button(_("✖️ Cancel"), "cancel")]]))


async def _add_to_customer(callback: CallbackQuery, state: FSMContext, session: AsyncSession, user: User,
                           viewer: Viewer, settings: Settings, customer_id: int, *, anyway: bool) -> None:
    card = await _card(state)
    await callback.answer()
    if not anyway:
        same = await duplicate_contacts(session, viewer, customer_id, name=card.name, mobile=card.mobile)
        if same:
            names = "、".join(html.escape(p.name) for p in same)
            await callback.message.answer(
                _("Is it this one? Already listed: {names}").format(names=names),
                reply_markup=InlineKeyboardMarkup(inline_keyboard=[
                    [_button(_("➕ No, add a new one"), "to", id=customer_id, anyway=True)],
                    [_button(_("✖️ Cancel"), "cancel")]]))
            return
    data = await state.get_data()
    person = await save_to_customer(session, viewer, card, customer_id, user_id=user.id,
                                    origin_key=origin(callback.message, data))
    await state.clear()
    await callback.message.answer(_("Saved: {person} is a contact now.").format(person=html.escape(person.name)))
    await show_card(callback.message, session, user, viewer, settings, customer_id)


async def typed_value(message: Message, state: FSMContext) -> None:
    data = await state.get_data()
    field = data.get("field")
    if field not in FIELDS:
        await _show(message, state)
        return
    value = check_field(field, message.text)  # a refusal leaves the card as it was (bot.errors)
    card = data.get("card") or {}
    await state.update_data(card={**card, field: value})
    await _show(message, state)


def create_router() -> Router:
    router = Router(name="namecard")
    router.message.filter(Registered())
    router.callback_query.filter(Registered())
    router.callback_query.register(on_button, NameCardCallback.filter())
    private = F.chat.type == ChatType.PRIVATE
    picture = F.photo | F.document.mime_type.in_(IMAGE_TYPES)
    router.message.register(card_photo, private, picture, StateFilter(None, ReadCard))
    not_command = ~F.text.startswith("/")
    router.message.register(typed_value, StateFilter(ReadCard.value), F.text, not_command)
    router.message.register(text_please, StateFilter(ReadCard.value))
    router.message.register(buttons_please, StateFilter(ReadCard.review, ReadCard.customer, ReadCard.stage))
    return router
