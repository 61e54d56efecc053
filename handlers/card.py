"""The customer card (name, stage, owner, contact and purchase clocks, key contacts, open complaints)."""

from __future__ import annotations

import html

from aiogram import Router
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup
from aiogram.utils.i18n import gettext as _
from sqlalchemy.ext.asyncio import AsyncSession

from bot.callbacks import (
    ContactCallback,
    CustomerCallback,
    EditCallback,
    FeedbackCallback,
    HistoryCallback,
    LogCallback,
    OrderCallback,
    ReassignCallback,
    StageCallback,
)
from bot.filters import Registered
from bot.formatting import ago, day, duration, money
from bot.labels import rfm_segment_label, stage_label
from bot.settings import Settings
from models import Role, User
from services.access import Viewer
from services.cards import Card, Clock, customer_card
from services.messages import DomainError
from services.rfm import RFM_DAYS


def _clock(clock: Clock, language: str, never: str) -> str:
    if clock.since is None:
        return never
    text = ago(clock.days, language)
    if clock.overdue_days:
        text += " — " + _("{duration} overdue").format(duration=duration(clock.overdue_days, language))
    return text


def render_card(card: Card, user: User, settings: Settings) -> str:
    c, lang = card.customer, user.language
    lines = [f"<b>{html.escape(c.name)}</b>"]
    if c.short_name and c.short_name != c.name:
        lines[0] += f" ({html.escape(c.short_name)})"
    lines.append(_("Stage: {stage}").format(stage=stage_label(c.stage)))
    lines.append(_("Owner: {name}").format(name=html.escape(card.owner_name) if card.owner_name else _("nobody")))
    lines.append(_("Last contact: {when}").format(when=_clock(card.contact, lang, _("never"))))
    purchase = _clock(card.purchase, lang, _("no purchases yet"))
    if c.txn_count:
        purchase += " · " + _("{count} orders, {amount} in total").format(
            count=c.txn_count, amount=money(c.txn_amount_cents, settings.currency, lang))
    lines.append(_("Last purchase: {when}").format(when=purchase))
    if c.rfm_segment is not None and c.rfm_scored_on is not None:
        lines.append(_("RFM: R{r} F{f} M{m} · {segment} (the {days} days to {date})").format(
            r=c.rfm_r, f=c.rfm_f, m=c.rfm_m, segment=rfm_segment_label(c.rfm_segment), days=RFM_DAYS,
            date=day(c.rfm_scored_on, lang)))
    if c.phone:
        lines.append(_("Phone: {phone}").format(phone=html.escape(c.phone)))
    for person in card.contacts:
        parts = [html.escape(person.name)]
        if person.title:
            parts.append(html.escape(person.title))
        if person.mobile:
            parts.append(html.escape(person.mobile))  # Telegram makes the number tap-to-call
        if person.birthday:
            parts.append(_("birthday {date}").format(date=day(person.birthday, lang)))
        lines.append("👤 " + " · ".join(parts))
    if card.open_complaints:
        lines.append(_("⚠️ Open complaints: {count}").format(count=len(card.open_complaints)))
        for complaint in card.open_complaints[:3]:
            lines.append("  · " + html.escape((complaint.text or "")[:80]))
    return "\n".join(lines)


async def show_card(target, session: AsyncSession, user: User, viewer: Viewer, settings: Settings,
                    customer_id: int, extra_rows: list | None = None) -> bool:
    """Send the card as a new message to `target` (a Message); False when the customer is not visible.
    `extra_rows`: buttons added under the card's own (e.g. ➕ New customer after a search)."""
    try:
        card = await customer_card(session, viewer, customer_id, timezone=user.timezone)
    except DomainError:
        return False
    keyboard = card_keyboard(card, user)
    if extra_rows:
        keyboard = InlineKeyboardMarkup(inline_keyboard=[*keyboard.inline_keyboard, *extra_rows])
    await target.answer(render_card(card, user, settings), reply_markup=keyboard)
    return True


def card_keyboard(card: Card, user: User) -> InlineKeyboardMarkup:
    from handlers.feedback import open_complaint_buttons

    customer_id = card.customer.id
    return InlineKeyboardMarkup(inline_keyboard=[[
        InlineKeyboardButton(text=_("📍 Log visit"), callback_data=LogCallback(kind="visit", id=customer_id).pack()),
        InlineKeyboardButton(text=_("📞 Log call"), callback_data=LogCallback(kind="call", id=customer_id).pack()),
    ], [
        InlineKeyboardButton(text=_("🧾 Record order"), callback_data=OrderCallback(step="start", id=customer_id).pack()),
        InlineKeyboardButton(text=_("💬 Feedback"), callback_data=FeedbackCallback(step="start", id=customer_id).pack()),
    ], [
        InlineKeyboardButton(text=_("📜 History"), callback_data=HistoryCallback(id=customer_id, new=True).pack()),
        InlineKeyboardButton(text=_("👥 Contacts"), callback_data=ContactCallback(step="list", id=customer_id).pack()),
    ], [
        InlineKeyboardButton(text=_("🎯 Stage"), callback_data=StageCallback(id=customer_id).pack()),
        InlineKeyboardButton(text=_("✏️ Edit"), callback_data=EditCallback(id=customer_id).pack()),
    ], *([[InlineKeyboardButton(text=_("👤 Reassign"), callback_data=ReassignCallback(customer=customer_id).pack())]]
         if user.role != Role.rep else []),
        *open_complaint_buttons(card.open_complaints[:3])])


async def open_card(callback: CallbackQuery, callback_data: CustomerCallback, session: AsyncSession, user: User,
                    viewer: Viewer, settings: Settings) -> None:
    card = await customer_card(session, viewer, callback_data.id, timezone=user.timezone)  # refused: bot.errors alerts
    await callback.answer()
    if callback.message is not None:
        await callback.message.answer(render_card(card, user, settings), reply_markup=card_keyboard(card, user))
        return
    await callback.answer()


def create_router() -> Router:
    router = Router(name="card")
    router.callback_query.filter(Registered())
    router.callback_query.register(open_card, CustomerCallback.filter())
    return router
