"""/audit 人易 (admins): who changed what at a customer, newest first (services.audit.customer_trail)."""

from __future__ import annotations

import html
import json
from zoneinfo import ZoneInfo

from aiogram import Router
from aiogram.filters import Command, CommandObject
from aiogram.types import CallbackQuery, Message
from aiogram.utils.i18n import gettext as _
from sqlalchemy.ext.asyncio import AsyncSession

from bot.callbacks import AuditCallback
from bot.filters import Registered
from handlers.common import pick_customer
from models import User
from services.access import Viewer
from services.audit import TRAIL_LIMIT, TrailEntry, customer_trail
from services.lookup import LookupIndex


def _action(action: str) -> str:
    return {"create": _("created"), "update": _("changed"), "archive": _("archived"), "restore": _("restored"),
            "void": _("voided"), "import": _("imported"), "reassign": _("reassigned")}.get(action, action)


def _entity(entity: str) -> str:
    return {"customer": _("customer"), "contact_person": _("contact"), "interaction": _("visit or call"),
            "purchase": _("order"), "feedback": _("feedback")}.get(entity, entity)


def _line(entry: TrailEntry, timezone: str) -> str:
    when = entry.at.astimezone(ZoneInfo(timezone)).strftime("%Y-%m-%d %H:%M")
    who = entry.who or {"import": _("import"), "cli": _("command line")}.get(entry.actor, _("system"))
    changes = json.dumps(entry.changes, ensure_ascii=False, default=str)
    if len(changes) > 120:
        changes = changes[:119] + "…"
    return f"{when} · {html.escape(who)} · {_action(entry.action)} {_entity(entry.entity)} #{entry.entity_id}\n" \
           f"   <code>{html.escape(changes)}</code>"


async def show(message: Message, session: AsyncSession, user: User, viewer: Viewer, customer_id: int) -> None:
    customer, entries = await customer_trail(session, viewer, customer_id)
    lines = [_("<b>Audit trail of {name}</b> (newest first, at most {limit})").format(
        name=html.escape(customer.name), limit=TRAIL_LIMIT)]
    lines += [_line(e, user.timezone) for e in entries] or [_("No changes recorded.")]
    await message.answer("\n".join(lines)[:4000])


async def audit_command(message: Message, command: CommandObject, session: AsyncSession, user: User,
                        viewer: Viewer, index: LookupIndex) -> None:
    query = (command.args or "").strip()[:100]
    if not query:
        await message.answer(_("Send /audit with a customer's name, e.g. /audit 人易."))
        return
    customer_id = await pick_customer(message, query, index, viewer, lambda cid: AuditCallback(id=cid).pack())
    if customer_id is not None:
        await show(message, session, user, viewer, customer_id)


async def audit_button(callback: CallbackQuery, callback_data: AuditCallback, session: AsyncSession, user: User,
                       viewer: Viewer) -> None:
    await show(callback.message, session, user, viewer, callback_data.id)  # a refusal: bot.errors answers it
    await callback.answer()


def create_router() -> Router:
    """Refusals (not an admin, customer gone) are raised by services and answered by bot.errors."""
    router = Router(name="audit")
    router.message.filter(Registered())
    router.callback_query.filter(Registered())
    router.message.register(audit_command, Command("audit"))
    router.callback_query.register(audit_button, AuditCallback.filter())
    return router
