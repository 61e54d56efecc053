"""/history: a customer's recent interactions, orders and feedback, newest first, a page at a time."""

from __future__ import annotations

import html

from aiogram import Router
from aiogram.filters import Command, CommandObject
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message
from aiogram.utils.i18n import gettext as _
from sqlalchemy.ext.asyncio import AsyncSession

from bot.callbacks import CustomerCallback, HistoryCallback
from bot.filters import ButtonCustomer, Registered
from bot.formatting import day, money
from bot.labels import feedback_label, interaction_label
from bot.settings import Settings
from handlers.common import pick_customer
from models import Customer, User
from services.access import Viewer
from services.cards import visible_customer
from services.history import Event, Page, history
from services.lookup import LookupIndex

ICONS = {"visit": "📍", "call": "📞", "email": "✉️", "chat": "💬", "message": "💬", "letter": "✉️", "gift": "🎁",
         "event": "🎪", "order": "🧾", "complaint": "⚠️", "suggestion": "💡", "inquiry": "❓", "praise": "👍"}
MAX_TEXT = 200


def event_line(event: Event, user: User, settings: Settings) -> str:
    parts = [day(event.day, user.language)]
    if event.source == "interaction":
        parts.append(interaction_label(event.kind) + (" · " + _("checked in") if event.checked_in else ""))
    elif event.source == "purchase":
        parts.append(_("order {amount}").format(amount=money(event.amount_cents, settings.currency, user.language)))
    else:
        label = feedback_label(event.kind)
        if event.kind == "complaint":
            label += " (" + (_("open") if event.status == "open" else _("resolved")) + ")"
        if event.rating:
            label += " " + "★" * event.rating
        parts.append(label)
    if event.by:
        parts.append(html.escape(event.by))
    line = ICONS.get(event.kind, "•") + " " + " · ".join(parts)
    if event.text:
        text = event.text if len(event.text) <= MAX_TEXT else event.text[:MAX_TEXT] + "…"
        line += "\n    " + html.escape(text)
    return line


def render(name: str, page: Page, user: User, settings: Settings) -> str:
    head = _("<b>{name}</b> — history, page {page} of {pages}").format(
        name=html.escape(name), page=page.number + 1, pages=page.pages)
    if not page.events:
        return head + "\n" + _("Nothing recorded yet: no contacts, orders or feedback.")
    return "\n\n".join([head] + [event_line(e, user, settings) for e in page.events])


def keyboard(customer_id: int, page: Page) -> InlineKeyboardMarkup:
    row = []
    if page.number > 0:
        row.append(InlineKeyboardButton(text=_("◀ Newer"), callback_data=HistoryCallback(
            id=customer_id, page=page.number - 1).pack()))
    if page.number + 1 < page.pages:
        row.append(InlineKeyboardButton(text=_("Older ▶"), callback_data=HistoryCallback(
            id=customer_id, page=page.number + 1).pack()))
    card = [InlineKeyboardButton(text=_("📇 Card"), callback_data=CustomerCallback(action="card", id=customer_id)
                                 .pack())]
    return InlineKeyboardMarkup(inline_keyboard=[row, card] if row else [card])


async def turn_page(callback: CallbackQuery, callback_data: HistoryCallback, session: AsyncSession, user: User,
                    viewer: Viewer, settings: Settings, customer: Customer) -> None:
    page = await history(session, viewer, customer.id, page=callback_data.page, timezone=user.timezone)
    await callback.answer()
    text, markup = render(customer.name, page, user, settings), keyboard(customer.id, page)
    if callback_data.new:
        await callback.message.answer(text, reply_markup=markup)
    else:
        await callback.message.edit_text(text, reply_markup=markup)


async def history_command(message: Message, command: CommandObject, session: AsyncSession, user: User,
                          viewer: Viewer, index: LookupIndex, settings: Settings) -> None:
    query = (command.args or "").strip()
    if not query:
        await message.answer(_("Send /history with a customer's name, e.g. /history 人易 — or tap 📜 History on a "
                               "customer's card."))
        return
    customer_id = await pick_customer(message, query, index, viewer,
                                      lambda cid: HistoryCallback(id=cid, new=True).pack())
    if customer_id is not None:
        customer = await visible_customer(session, viewer, customer_id)
        page = await history(session, viewer, customer.id, timezone=user.timezone)
        await message.answer(render(customer.name, page, user, settings), reply_markup=keyboard(customer.id, page))


def create_router() -> Router:
    router = Router(name="history")
    router.message.filter(Registered())
    router.callback_query.filter(Registered())
    router.message.register(history_command, Command("history"))
    router.callback_query.register(turn_page, HistoryCallback.filter(), ButtonCustomer())
    return router
