"""Inline mode: typing `@bot 人易` in any chat lists the customers the user may see; picking one posts a
short card (name, stage, owner, last contact, phone) — nothing more private than that; posted into a
group or channel, the phone is masked (services.privacy)."""

from __future__ import annotations

import html

from aiogram import Router
from aiogram.types import InlineQuery, InlineQueryResultArticle, InputTextMessageContent
from aiogram.utils.i18n import gettext as _
from sqlalchemy.ext.asyncio import AsyncSession

from bot.filters import Registered
from bot.formatting import ago
from bot.labels import stage_label
from models import Customer, User
from services.access import Viewer
from services.cards import found_customers, local_days_since
from services.lookup import LookupIndex
from services.privacy import is_shared, mask_phone

RESULTS = 10


def short_card(customer: Customer, owner: str | None, language: str, phone: str | None,
               timezone: str = "Asia/Shanghai") -> str:
    lines = [f"<b>{html.escape(customer.name)}</b>", _("Stage: {stage}").format(stage=stage_label(customer.stage)),
             _("Owner: {name}").format(name=html.escape(owner) if owner else _("nobody"))]
    if customer.last_contact_at:
        lines.append(_("Last contact: {when}").format(when=ago(local_days_since(customer.last_contact_at, timezone),
                                                                language)))
    if phone:
        lines.append(_("Phone: {phone}").format(phone=html.escape(phone)))
    return "\n".join(lines)


async def inline_search(inline_query: InlineQuery, session: AsyncSession, user: User, viewer: Viewer,
                        index: LookupIndex) -> None:
    query = inline_query.query.strip()[:100]
    results = []
    for found in await found_customers(session, viewer, index, query, RESULTS) if query else []:
        customer, owner = found.customer, found.owner_name
        phone = mask_phone(customer.phone) if is_shared(inline_query.chat_type) else customer.phone
        results.append(InlineQueryResultArticle(
            id=str(customer.id), title=customer.name,
            description=" · ".join(filter(None, [stage_label(customer.stage), owner, phone])),
            input_message_content=InputTextMessageContent(
                message_text=short_card(customer, owner, user.language, phone, user.timezone), parse_mode="HTML")))
    # Personal and uncached: what one user may see is not what another may.
    await inline_query.answer(results, is_personal=True, cache_time=0)


def create_router() -> Router:
    router = Router(name="inline")
    router.inline_query.filter(Registered())
    router.inline_query.register(inline_search)
    return router
