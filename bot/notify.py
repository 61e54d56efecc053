"""What reminders look like in a chat: the agenda (/today and the morning digest), urgent notices.

Everything here renders in the recipient's language through an explicit gettext (`_`), because the
scheduler writes messages outside any update (no aiogram i18n context there)."""

from __future__ import annotations

import html
from collections.abc import Callable
from datetime import date
from typing import TYPE_CHECKING, Any

from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup

from bot.callbacks import (
    AgendaCallback,
    CustomerCallback,
    LogCallback,
    ReassignCallback,
    ReminderCallback,
    RouteCallback,
)
from bot.formatting import day
from bot.formatting import days as n_days
from bot.i18n import gettext_for
from models import Customer, Feedback, OutboxKind, ReminderKind, User
from services.reminders import AgendaItem

if TYPE_CHECKING:
    from services.reports import Daily, Report

Gettext = Callable[[str], str]
DIGEST_ITEMS = 10
NUMBERS = "①②③④⑤⑥⑦⑧⑨⑩⑪⑫⑬⑭⑮⑯⑰⑱⑲⑳"
ICONS = {
    ReminderKind.escalation: "🚨",
    ReminderKind.next_step: "📌",
    ReminderKind.contact_overdue: "🔴",
    ReminderKind.birthday: "🎂",
    ReminderKind.thank_you: "🙏",
    ReminderKind.purchase_lapse: "📉",
    ReminderKind.not_now: "⏳",
    ReminderKind.quoted: "💬",
    ReminderKind.contact_due: "🟡",
}


def _days_since(detail: dict, today: date) -> int:
    return (today - date.fromisoformat(detail["since"])).days


def item_line(item: AgendaItem, _: Gettext, language: str, today: date) -> str:
    """One reminder as a line: what, about whom, and why now."""
    r, detail = item.reminder, item.reminder.detail or {}
    name = html.escape(item.customer.name if item.customer else "?")
    if r.kind in (ReminderKind.contact_due, ReminderKind.contact_overdue, ReminderKind.escalation):
        days = n_days(_days_since(detail, today), language)
        cycle = n_days(detail["cycle"], language)
        if detail.get("never"):
            text = _("{name}: never contacted, added {days} ago (cycle {cycle})")
        else:
            text = _("{name}: no contact for {days} (cycle {cycle})")
        text = text.format(name=name, days=days, cycle=cycle)
        if r.kind != ReminderKind.contact_due:
            text += " — " + _("overdue")
        if r.kind == ReminderKind.escalation and item.owner is not None:
            text += " · " + _("owner: {name}").format(name=html.escape(item.owner.name))
    elif r.kind == ReminderKind.purchase_lapse:
        days = n_days(_days_since(detail, today), language)
        if detail.get("learned"):
            text = _("{name}: no purchase for {days}; they usually buy every {rhythm} (learned from their orders)") \
                .format(name=name, days=days, rhythm=n_days(detail["rhythm"], language))
        else:
            text = _("{name}: no purchase for {days} (purchase cycle {cycle})").format(
                name=name, days=days, cycle=n_days(detail["cycle"], language))
    elif r.kind == ReminderKind.thank_you:
        text = _("{name}: bought on {date} — call or message to thank them").format(
            name=name, date=day(date.fromisoformat(detail["purchased_on"]), language))
    elif r.kind == ReminderKind.not_now:
        text = _("{name}: expected to buy around {date}").format(
            name=name, date=day(date.fromisoformat(detail["expected"]), language))
    elif r.kind == ReminderKind.quoted:
        text = _("{name}: quoted, no response for {days}").format(
            name=name, days=n_days(_days_since(detail, today), language))
    elif r.kind == ReminderKind.birthday:
        person = item.person
        who = html.escape(person.name) if person else "?"
        if person and person.title:
            who += f" ({html.escape(person.title)})"
        text = _("{name}: birthday of {person} today").format(name=name, person=who)
    elif r.kind == ReminderKind.next_step:
        step = item.interaction.next_step if item.interaction and item.interaction.next_step else ""
        text = _("{name}: your follow-up planned for {date}").format(name=name, date=day(r.due_on, language))
        if step:
            text += f" — {html.escape(step)}"
    else:
        text = name
    return f"{ICONS.get(r.kind, '•')} {text}"


def item_buttons(item: AgendaItem, number: str, _: Gettext) -> list[InlineKeyboardButton]:
    r = item.reminder
    row = []
    if r.customer_id:
        row.append(InlineKeyboardButton(text=f"{number} 📇", callback_data=CustomerCallback(
            action="card", id=r.customer_id).pack()))
        if r.kind == ReminderKind.escalation:
            row.append(InlineKeyboardButton(text=_("👤 reassign"), callback_data=ReassignCallback(
                customer=r.customer_id, reminder=r.id).pack()))
        else:
            row.append(InlineKeyboardButton(text="📍", callback_data=LogCallback(kind="visit", id=r.customer_id).pack()))
            row.append(InlineKeyboardButton(text="📞", callback_data=LogCallback(kind="call", id=r.customer_id).pack()))
    for days in (1, 3, 7):
        row.append(InlineKeyboardButton(text=_("+{n}d").format(n=days), callback_data=ReminderCallback(
            action="snooze", id=r.id, days=days).pack()))
    row.append(InlineKeyboardButton(text="✅", callback_data=ReminderCallback(action="done", id=r.id).pack()))
    return row


AGENDA_PAGE = 5  # items per page: five lines and one row of number buttons fit a phone screen


def agenda_pages(total: int) -> int:
    return max(1, -(-total // AGENDA_PAGE))


def render_agenda(items: list[AgendaItem], total: int, user: User, today: date, *, digest: bool,
                  _: Gettext | None = None, page: int = 0) -> tuple[str, InlineKeyboardMarkup | None]:
    """The agenda, one page of AGENDA_PAGE numbered lines in the order that counts (services.reminders
    .importance): one number button per line (it opens that item's actions), ◀ ▶ between pages."""
    _ = _ or gettext_for(user.language)
    if not items:
        return _("Nothing due today. 🎉"), None
    pages = agenda_pages(total)
    page = min(max(page, 0), pages - 1)
    if digest:
        heading = _("Good morning! Due today: {count}. The ones that count most come first.").format(count=total)
    else:
        heading = _("Due today: {count}").format(count=total)
    lines = [f"<b>{heading}</b>"]
    if pages > 1:
        lines[0] += " · " + _("page {page} of {pages}").format(page=page + 1, pages=pages)
    lines.append("")
    first = page * AGENDA_PAGE
    numbers = []
    for position, item in enumerate(items[first:first + AGENDA_PAGE], start=first + 1):
        lines.append(f"{position}. {item_line(item, _, user.language, today)}")
        numbers.append(InlineKeyboardButton(text=str(position), callback_data=AgendaCallback(
            action="item", page=page, id=item.reminder.id).pack()))
    lines += ["", _("Tap a number for what to do with it.")]
    rows = [numbers]
    if pages > 1:
        nav = [InlineKeyboardButton(text="◀", callback_data=AgendaCallback(action="page", page=page - 1).pack())] \
            if page else []
        nav.append(InlineKeyboardButton(text=f"{page + 1}/{pages}", callback_data=AgendaCallback(
            action="page", page=page).pack()))
        if page < pages - 1:
            nav.append(InlineKeyboardButton(text="▶", callback_data=AgendaCallback(action="page", page=page + 1).pack()))
        rows.append(nav)
    if any(i.customer is not None and i.reminder.kind != ReminderKind.escalation for i in items):
        rows.append([InlineKeyboardButton(text=_("🗺 Plan my route"), callback_data=RouteCallback(action="plan").pack())])
    return "\n".join(lines), InlineKeyboardMarkup(inline_keyboard=rows)


def item_actions(item: AgendaItem, position: int, page: int, _: Gettext) -> InlineKeyboardMarkup:
    """One agenda item's actions, a few to a row: open / log, snooze, done, and back to the page."""
    r = item.reminder
    rows: list[list[InlineKeyboardButton]] = []
    if r.customer_id:
        first = [InlineKeyboardButton(text=_("📇 card"), callback_data=CustomerCallback(action="card",
                                                                                      id=r.customer_id).pack())]
        if r.kind == ReminderKind.escalation:
            first.append(InlineKeyboardButton(text=_("👤 reassign"), callback_data=ReassignCallback(
                customer=r.customer_id, reminder=r.id).pack()))
        else:
            first.append(InlineKeyboardButton(text=_("📍 visit"), callback_data=LogCallback(
                kind="visit", id=r.customer_id).pack()))
            first.append(InlineKeyboardButton(text=_("📞 call"), callback_data=LogCallback(
                kind="call", id=r.customer_id).pack()))
        rows.append(first)
    rows.append([InlineKeyboardButton(text=_("+{n}d").format(n=days), callback_data=AgendaCallback(
        action="snooze", page=page, id=r.id, days=days).pack()) for days in (1, 3, 7)]
        + [InlineKeyboardButton(text=_("✅ done"), callback_data=AgendaCallback(action="done", page=page,
                                                                               id=r.id).pack())])
    rows.append([InlineKeyboardButton(text=_("◀ back to the list ({n})").format(n=position),
                                      callback_data=AgendaCallback(action="page", page=page).pack())])
    return InlineKeyboardMarkup(inline_keyboard=rows)


def without_reminder(markup: InlineKeyboardMarkup | None, reminder_id: int) -> InlineKeyboardMarkup | None:
    """The same keyboard minus the row of one reminder (after it was snoozed or done)."""
    if markup is None:
        return None
    def about_it(data: str | None) -> bool:
        prefix = ReminderCallback.__prefix__ + ReminderCallback.__separator__
        return bool(data and data.startswith(prefix) and ReminderCallback.unpack(data).id == reminder_id)

    return InlineKeyboardMarkup(inline_keyboard=[
        row for row in markup.inline_keyboard if not any(about_it(b.callback_data) for b in row)])


ESCALATIONS_SHOWN = 8


def escalation_notice(items: list[AgendaItem], manager: User, today: date) -> tuple[str, InlineKeyboardMarkup]:
    """One message for the escalations of one scan: the first few with their buttons, the rest counted."""
    _ = gettext_for(manager.language)
    shown = items[:ESCALATIONS_SHOWN]
    lines = [_("🚨 Overdue follow-up in your team:")]
    rows = []
    for n, item in enumerate(shown, 1):
        marker = f"{n}. " if len(shown) > 1 else ""
        lines.append(marker + item_line(item, _, manager.language, today))
        rows.append(item_buttons(item, f"{n}" if len(shown) > 1 else "", _))
    if len(items) > len(shown):
        lines.append(_("… and {count} more: see /today.").format(count=len(items) - len(shown)))
    return "\n".join(lines), InlineKeyboardMarkup(inline_keyboard=rows)


def complaint_notice(feedback: Feedback, customer: Customer, author: User | None,
                     manager: User) -> tuple[str, InlineKeyboardMarkup]:
    _ = gettext_for(manager.language)
    lines = [_("⚠️ New complaint from {name}").format(name=html.escape(customer.name))]
    if author is not None:
        lines.append(_("Recorded by {name}").format(name=html.escape(author.name)))
    if feedback.product:
        lines.append(_("Product: {product}").format(product=html.escape(feedback.product)))
    if feedback.rating:
        lines.append(_("Rating: {rating}/5").format(rating=feedback.rating))
    lines.append(html.escape(feedback.text or ""))
    markup = InlineKeyboardMarkup(inline_keyboard=[[InlineKeyboardButton(
        text=_("📇 Open card"), callback_data=CustomerCallback(action="card", id=customer.id).pack())]])
    return "\n".join(lines), markup


async def notify_complaint(session, feedback: Feedback, now=None) -> int:
    """A new complaint, told at once to those services.feedback.complaint_recipients names, inside their
    working hours, through the outbox — in the caller's transaction, so the notice exists exactly when the
    complaint does."""
    from models import utcnow
    from services import outbox
    from services.feedback import complaint_recipients

    now = now or utcnow()
    customer = await session.get(Customer, feedback.customer_id)
    author = await session.get(User, feedback.user_id) if feedback.user_id else None
    queued = 0
    for manager in await complaint_recipients(session, feedback):
        if not outbox.reachable(manager):
            continue
        text, markup = complaint_notice(feedback, customer, author, manager)
        queued += await outbox.enqueue(
            session, key=f"urgent:complaint:{feedback.id}:{manager.id}", chat_id=manager.telegram_id,
            user_id=manager.id, kind=OutboxKind.urgent, text=text, reply_markup=markup.model_dump(exclude_none=True),
            not_before=outbox.next_working_moment(manager, now))
    return queued


class BotPresenter:
    """What the scheduled jobs queue, worded and laid out for Telegram (jobs.reminders.Presenter)."""

    @staticmethod
    def agenda(items: list[AgendaItem], user: User, today: date) -> tuple[str, dict[str, Any] | None]:
        text, markup = render_agenda(items, len(items), user, today, digest=True)
        return text, markup.model_dump(exclude_none=True) if markup else None

    @staticmethod
    def escalation(items: list[AgendaItem], manager: User, today: date) -> tuple[str, dict[str, Any]]:
        text, markup = escalation_notice(items, manager, today)
        return text, markup.model_dump(exclude_none=True)

    @staticmethod
    def daily(digest: Daily, leader: User, currency: str) -> str:
        from bot.report_view import daily_text

        return daily_text(digest, leader, currency)

    @staticmethod
    def weekly(report: Report, leader: User, currency: str) -> tuple[str, list[tuple[str, bytes]]]:
        from bot.report_view import report_charts, summary

        return summary(report, leader, currency), report_charts(report, leader)
