"""/report: a manager's analyses on demand — pick the period, read the summary with its charts, open one
analysis, narrow to one rep, or get everything as a spreadsheet."""

from __future__ import annotations

import html
import tempfile
from functools import partial
from zoneinfo import ZoneInfo

from aiogram import Router
from aiogram.filters import Command
from aiogram.types import BufferedInputFile, CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message
from aiogram.utils.i18n import gettext as _
from sqlalchemy.ext.asyncio import AsyncSession

from bot.background import Background
from bot.callbacks import ReportCallback
from bot.detached import detach
from bot.filters import Registered
from bot.report_view import period_name, report_detail, report_summary, report_workbook
from bot.settings import Settings
from models import Role, User, today_in, utcnow
from services.access import Viewer, narrowed_to, team_members
from services.reports import ANALYSES, PERIODS, RFM_DAYS, RFM_WINDOWS


def analysis_label(analysis: str) -> str:
    return {"rfm": _("RFM"), "churn": _("Visit first"), "key_accounts": _("Key accounts"),
            "distribution": _("Distribution"), "performance": _("Sales"), "complaints": _("Complaints"),
            "activity": _("Team activity"), "satisfaction": _("Satisfaction")}[analysis]


def _button(text: str, **data: object) -> InlineKeyboardButton:
    return InlineKeyboardButton(text=text, callback_data=ReportCallback(**data).pack())


def periods_keyboard(rep: int = 0) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(inline_keyboard=[[_button(period_name(p, _), period=p, rep=rep) for p in PERIODS]])


def report_keyboard(period: str, rep: int, user: User, window: int = RFM_DAYS, *,
                    windows: bool = False) -> InlineKeyboardMarkup:
    buttons = [_button(analysis_label(a), period=period, show=a, rep=rep, window=window) for a in ANALYSES]
    rows = [buttons[i:i + 4] for i in range(0, len(buttons), 4)]
    if windows:  # under RFM: look at another window of purchases
        rows.append([_button(("• " if days == window else "") + _("{days} days").format(days=days),
                             period=period, show="rfm", rep=rep, window=days) for days in RFM_WINDOWS])
    last = [_button(_("📥 Spreadsheet (XLSX)"), period=period, show="xlsx", rep=rep, window=window)]
    if user.role != Role.rep and not rep:
        last.append(_button(_("👤 One rep"), period=period, show="reps", window=window))
    rows.append(last)
    return InlineKeyboardMarkup(inline_keyboard=rows)


async def report_command(message: Message) -> None:
    await message.answer(_("Report for which period? (each ends yesterday)"), reply_markup=periods_keyboard())


def _today(user: User):
    return today_in(user.timezone)


async def on_report(callback: CallbackQuery, callback_data: ReportCallback, session: AsyncSession, user: User,
                    viewer: Viewer, settings: Settings, background: Background) -> None:
    period, show, rep, window = callback_data.period, callback_data.show, callback_data.rep, callback_data.window
    if period not in PERIODS or (show not in ANALYSES and show not in ("summary", "xlsx", "reps")) \
            or window not in RFM_WINDOWS:
        await callback.answer(_("That button no longer works. Search for the customer again."), show_alert=True)
        return
    scope = viewer
    scope_name = None
    if rep:
        scope, member = await narrowed_to(session, viewer, rep)
        scope_name = _("Customers of {name}").format(name=member.name)
    if show == "reps":
        team = await team_members(session, viewer)
        await callback.answer()
        rows = [[_button(member.name, period=period, rep=member.id, window=window)] for member in team]
        await callback.message.answer(_("Whose customers?"), reply_markup=InlineKeyboardMarkup(inline_keyboard=rows))
        return
    await callback.answer(_("Working on it…"))
    options = dict(viewer=scope, kind=period, today=_today(user), language=user.language, timezone=user.timezone,
                   rfm_days=window)
    # Seconds at 100k customers when built: the update ends now and the report follows (bot.detached), read
    # prepared or built (services.reports.prepared), drawn, worded and written in the bot's worker process
    # (bot.background) while the other users keep their replies; only the text, pictures or file come back.
    detach(partial(_send_report, callback.message, background, options, show=show, period=period, rep=rep,
                   window=window, user=user, currency=settings.currency, scope_name=scope_name),
           chat=callback.message, what="report")


async def _send_report(message: Message, background: Background, options: dict, *, show: str, period: str,
                       rep: int, window: int, user: User, currency: str, scope_name: str | None) -> None:
    if show == "summary":
        text, pictures = await background.run(partial(report_summary, currency=currency, scope_name=scope_name,
                                                      **options))
        await message.answer(text, reply_markup=report_keyboard(period, rep, user, window))
        for name, png in pictures:
            await message.answer_photo(BufferedInputFile(png, name))
    elif show == "xlsx":
        with tempfile.TemporaryDirectory() as folder:  # nothing is left behind on the server
            name, data = await background.run(partial(
                report_workbook, folder=folder, scope_name=scope_name, by=user.name,
                generated=utcnow().astimezone(ZoneInfo(user.timezone)), **options))
        await message.answer_document(BufferedInputFile(data, name), caption=html.escape(
            _("Report for the last {period}").format(period=period_name(period, _))))
    else:
        text = await background.run(partial(report_detail, analysis=show, currency=currency, **options))
        await message.answer(text or _("Nothing to show."),
                             reply_markup=report_keyboard(period, rep, user, window, windows=show == "rfm"))


def create_router() -> Router:
    router = Router(name="report")
    router.message.filter(Registered())
    router.callback_query.filter(Registered())
    router.message.register(report_command, Command("report"))
    router.callback_query.register(on_report, ReportCallback.filter())
    return router
