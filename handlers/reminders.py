"""/today (the user's agenda) and the buttons of reminders: snooze, done, reassign (managers)."""

from __future__ import annotations

import html

from aiogram import F, Router
from aiogram.exceptions import TelegramBadRequest
from aiogram.filters import Command
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message
from aiogram.utils.i18n import gettext as _
from sqlalchemy.ext.asyncio import AsyncSession

from bot.callbacks import AgendaCallback, ReassignCallback, ReminderCallback
from bot.filters import Registered
from bot.formatting import day
from bot.notify import item_actions, render_agenda, without_reminder
from bot.report_view import segment_names
from models import User
from services import reminders
from services.access import Viewer, team_members
from services.cards import visible_customer
from services.customers import assign_owner, check_can_reassign
from services.rfm import SEGMENTS, my_slice


async def agenda_message(session: AsyncSession, user: User, page: int = 0) -> tuple[str, InlineKeyboardMarkup | None]:
    """A page of the user's agenda, with where their customers stand (RFM) under it."""
    items = await reminders.agenda(session, user)
    text, markup = render_agenda(items, len(items), user, reminders.local_today(user), digest=False, _=_, page=page)
    counts, first = await my_slice(session, user.id)
    if counts:
        names = segment_names(_)
        text += "\n\n" + _("Your customers by RFM: {list}").format(list=" · ".join(
            f"{names[s]} {n}" for s, n in sorted(counts.items(), key=lambda x: (-x[1], SEGMENTS.index(x[0])))))
        if first:
            text += "\n" + _("🔥 Visit first (high value, slipping): {list}").format(
                list=", ".join(html.escape(c.name) for c in first))
    return text, markup


async def today(message: Message, session: AsyncSession, user: User) -> None:
    """Bring the user's reminders up to date, then show the first page of what is due today."""
    await reminders.apply(session, await reminders.compute_due(session, user_id=user.id), user_id=user.id)
    text, markup = await agenda_message(session, user)
    await message.answer(text, reply_markup=markup)


async def _snooze_or_finish(session: AsyncSession, user: User, action: str, reminder_id: int, days: int) -> str:
    """Snooze or finish one of the user's reminders (services.reminders refuses what is not theirs or is
    closed); returns what to tell them."""
    if action == "snooze":
        reminder = await reminders.snooze(session, reminder_id, user, days)
        return _("Snoozed until {date}.").format(date=day(reminder.snoozed_until, user.language))
    await reminders.finish(session, reminder_id, user)
    return _("Done. ✅")


async def on_agenda(callback: CallbackQuery, callback_data: AgendaCallback, session: AsyncSession,
                    user: User) -> None:
    """The agenda's buttons: turn a page, open one item's actions, or do / snooze it — the list is drawn
    again at once, without the item that was done or snoozed."""
    note = None
    if callback_data.action == "item":
        items = await reminders.agenda(session, user)
        found = next(((n, i) for n, i in enumerate(items, 1) if i.reminder.id == callback_data.id), None)
        if found is not None and callback.message is not None:
            await callback.answer()
            await callback.message.edit_reply_markup(reply_markup=item_actions(found[1], found[0], callback_data.page, _))
            return
        note = _("That one is no longer due.")
    elif callback_data.action in ("snooze", "done"):
        note = await _snooze_or_finish(session, user, callback_data.action, callback_data.id, callback_data.days)
    await callback.answer(note)
    if callback.message is not None:
        text, markup = await agenda_message(session, user, callback_data.page)
        try:
            await callback.message.edit_text(text, reply_markup=markup)
        except TelegramBadRequest as exc:  # the same page tapped again: nothing to redraw
            if "not modified" not in str(exc):
                raise


async def on_reminder(callback: CallbackQuery, callback_data: ReminderCallback, session: AsyncSession,
                      user: User) -> None:
    await callback.answer(await _snooze_or_finish(session, user, callback_data.action, callback_data.id,
                                                  callback_data.days))
    if callback.message is not None and getattr(callback.message, "reply_markup", None) is not None:
        await callback.message.edit_reply_markup(
            reply_markup=without_reminder(callback.message.reply_markup, callback_data.id))


async def on_reassign(callback: CallbackQuery, callback_data: ReassignCallback, session: AsyncSession, user: User,
                      viewer: Viewer) -> None:
    check_can_reassign(viewer)  # refusals: bot.errors alerts
    customer = await visible_customer(session, viewer, callback_data.customer)  # refused: bot.errors alerts
    if not callback_data.to:
        team = await team_members(session, viewer, excluding=customer.owner_id, limit=30)
        if not team:
            await callback.answer(_("There is nobody else in your team to give it to."), show_alert=True)
            return
        rows = [[InlineKeyboardButton(text=member.name, callback_data=ReassignCallback(
            customer=customer.id, reminder=callback_data.reminder, to=member.id).pack())] for member in team]
        await callback.answer()
        await callback.message.answer(_("Give {name} to:").format(name=html.escape(customer.name)),
                                      reply_markup=InlineKeyboardMarkup(inline_keyboard=rows))
        return
    await assign_owner(session, viewer, customer.id, callback_data.to, user_id=user.id)
    new_owner = await session.get(User, callback_data.to)
    await callback.answer()
    await callback.message.edit_text(_("{customer} now belongs to {owner}.").format(
        customer=html.escape(customer.name), owner=html.escape(new_owner.name)))


def create_router() -> Router:
    router = Router(name="reminders")
    router.message.filter(Registered(), F.chat.type == "private")
    router.callback_query.filter(Registered())
    router.message.register(today, Command("today"))
    router.callback_query.register(on_reminder, ReminderCallback.filter())
    router.callback_query.register(on_agenda, AgendaCallback.filter())
    router.callback_query.register(on_reassign, ReassignCallback.filter())
    return router
