"""Managers' reports in the user's language: the summary text, the charts, one analysis in detail, the
spreadsheet's headings. Used by /report and by the weekly digest job (explicit gettext, like bot.notify)."""

from __future__ import annotations

import html
from datetime import timedelta

from bot.formatting import day, money, short_amount
from bot.i18n import gettext_for
from bot.report_words import Gettext, period_name, rfm_scope_note, segment_names, xlsx_about, xlsx_headings
from models import User
from services import charts
from services.reports import Daily, Report
from services.rfm import SEGMENTS

__all__ = ["daily_text", "detail", "period_name", "report_charts", "rfm_scope_note", "segment_names", "summary",
           "xlsx_about", "xlsx_headings"]
TOP = 5


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:+.0%}"


def summary(report: Report, user: User, currency: str, *, scope: str | None = None,
            _: Gettext | None = None) -> str:
    _ = _ or gettext_for(user.language)
    lang = user.language
    m = lambda cents: money(cents, currency, lang)  # noqa: E731
    names = segment_names(_)
    lines = ["<b>" + _("📊 Report for the last {period}: {start} – {end}").format(
        period=period_name(report.kind, _), start=day(report.period.start, lang), end=day(report.period.end, lang))
        + "</b>"]
    if scope:
        lines.append(html.escape(scope))
    prior = report.performance.prior_cents
    change = (report.total_cents - prior) / prior if prior else None
    lines.append(_("Sales: {amount} (a year earlier {prior}, {change})").format(
        amount=m(report.total_cents), prior=m(prior), change=_pct(change)))
    if report.key_accounts:
        top = ", ".join(f"{html.escape(report.name(a.customer_id))} {a.share:.0%}" for a in report.key_accounts[:3])
        lines.append(_("Key accounts: {count} customers make 80% of sales — {top}").format(
            count=len(report.key_accounts), top=top))
    if report.performance.top_growth:
        lines.append(_("Growing most: {list}").format(list=", ".join(
            f"{html.escape(report.name(p.key))} +{m(p.change_cents)}" for p in report.performance.top_growth[:3])))
    if report.performance.top_decline:
        lines.append(_("Declining most: {list}").format(list=", ".join(
            f"{html.escape(report.name(p.key))} −{m(-p.change_cents)}" for p in report.performance.top_decline[:3])))
    segments = report.rfm.segments
    if segments:
        lines.append(_("RFM: {list}").format(list=" · ".join(
            f"{names[s]} {n}" for s, n in sorted(segments.items(), key=lambda x: (-x[1], SEGMENTS.index(x[0]))))))
    if report.churn:
        lines.append(_("🔥 Visit first (high value, slipping): {list}").format(list=", ".join(
            html.escape(report.name(c.customer_id)) for c in report.churn[:TOP])))
    c = report.complaints
    complaint = _("Complaints: {new} in the period, {open} of them still open").format(
        new=c.by_kind.get("complaint", 0), open=c.open)
    if c.median_hours_to_resolve is not None:
        complaint += "; " + _("median {hours} h to resolve").format(hours=f"{c.median_hours_to_resolve:.0f}")
    if c.oldest_open is not None:
        complaint += "; " + _("{count} open in all up to {end}, the oldest: {name}, since {date}").format(
            count=c.open_total, end=day(report.period.end, lang), name=html.escape(report.name(c.oldest_open.customer_id)),
            date=day(c.oldest_open.created_at, lang))
    lines.append(complaint)
    total_contacts = sum(sum(w.values()) for w in report.activity.per_rep_week.values())
    lines.append(_("Contacts logged: {count}; customers contacted by several reps in one week: {crowded}").format(
        count=total_contacts, crowded=len(report.activity.crowded)))
    if report.satisfaction.least:
        lines.append(_("Least satisfied: {list}").format(list=", ".join(
            f"{html.escape(report.name(cid))} {rating:.1f}★" for cid, rating in report.satisfaction.least[:3])))
    return "\n".join(lines)


def detail(report: Report, analysis: str, user: User, currency: str, _: Gettext | None = None) -> str:
    """One analysis, top items only (the spreadsheet has everything)."""
    _ = _ or gettext_for(user.language)
    lang = user.language
    m = lambda cents: money(cents, currency, lang)  # noqa: E731
    names = segment_names(_)
    lines: list[str] = []
    if analysis == "rfm":
        lines.append("<b>" + _("RFM segments (purchases of the last {days} days)").format(
            days=report.rfm_window.days) + "</b>")
        lines.append(rfm_scope_note(report, _))
        for s, n in sorted(report.rfm.segments.items(), key=lambda x: (-x[1], SEGMENTS.index(x[0]))):
            lines.append(f"{names[s]}: {n}")
        moved = report.rfm.moved()[:8]
        if moved:
            lines.append(_("Moved since the previous period:"))
            lines += [f"{names[a]} → {names[b]}: {n}" for a, b, n in moved]
    elif analysis == "churn":
        lines.append("<b>" + _("High value, slipping — visit first") + "</b>")
        lines += [f"{n}. {html.escape(report.name(c.customer_id))} · R {c.before.r}→{c.now.r} · F {c.before.f}→"
                  f"{c.now.f} · {m(c.amount_cents)} · {html.escape(report.rep(report.customers[c.customer_id].owner_id))}"
                  for n, c in enumerate(report.churn[:10], 1)] or [_("Nobody is slipping.")]
    elif analysis == "key_accounts":
        lines.append("<b>" + _("Key accounts (80% of sales)") + "</b>")
        for a in report.key_accounts[:15]:
            rank = "" if a.rank_change is None else (f" ↑{a.rank_change}" if a.rank_change > 0 else
                                                     f" ↓{-a.rank_change}" if a.rank_change < 0 else " =")
            lines.append(f"{a.rank}. {html.escape(report.name(a.customer_id))} · {m(a.total_cents)} · {a.share:.0%}"
                         f" · {_pct(a.change)}{rank}")
        if not report.key_accounts:
            lines.append(_("No sales in this period."))
    elif analysis == "distribution":
        labels = {"region": _("Region"), "scale": _("Scale"), "nature": _("Nature"), "industry": _("Industry")}
        for dimension, shares in report.distribution.items():
            lines.append("<b>" + labels[dimension] + "</b>")
            lines += [f"{html.escape(s.label or '—')}: {s.customers} ({s.customer_share:.0%}) · {m(s.amount_cents)} "
                      f"({s.amount_share:.0%})" for s in shares[:6]]
    elif analysis == "performance":
        lines.append("<b>" + _("Sales by rep") + "</b>")
        lines += [f"{html.escape(report.rep(p.key))}: {m(p.total_cents)} ({_pct(p.change)})"
                  for p in report.rep_performance.rows[:10]]
        for title, rows in ((_("Top total"), report.performance.top_total), (_("Top growth"), report.performance.top_growth),
                            (_("Top decline"), report.performance.top_decline)):
            if rows:
                lines.append("<b>" + title + "</b>")
                lines += [f"{html.escape(report.name(p.key))}: {m(p.total_cents)} ({m(p.change_cents)})" for p in rows]
    elif analysis == "complaints":
        c = report.complaints
        lines.append("<b>" + _("Complaints") + "</b>")
        lines.append(_("Open {open}, resolved {resolved}").format(open=c.open, resolved=c.resolved))
        for title, counter, label in ((_("By product"), c.by_product, lambda k: k or "—"),
                                      (_("By rep"), c.by_rep, report.rep), (_("By region"), c.by_region,
                                                                            lambda k: k or "—")):
            if counter:
                lines.append(title + ": " + ", ".join(f"{html.escape(str(label(k)))} {n}"
                                                    for k, n in sorted(counter.items(),
                                                                       key=lambda x: (-x[1], str(label(x[0])), str(x[0])))[:5]))
    elif analysis == "activity":
        lines.append("<b>" + _("Team activity") + "</b>")
        for rep, weeks in sorted(report.activity.per_rep_week.items(),
                                 key=lambda x: (-sum(x[1].values()), report.rep(x[0]), x[0] or 0)):
            share = report.activity.within_cycle_share(rep) if rep is not None else None
            lines.append(_("{rep}: {count} contacts, {share} of customers within their cycle").format(
                rep=html.escape(report.rep(rep)), count=sum(weeks.values()),
                share="—" if share is None else f"{share:.0%}"))
        if report.activity.crowded:
            lines.append(_("Contacted by several reps in one week: {list}").format(list=", ".join(
                html.escape(report.name(cid)) for cid, _week, _reps in report.activity.crowded[:5])))
    elif analysis == "satisfaction":
        s = report.satisfaction
        lines.append("<b>" + _("Satisfaction") + "</b>")
        if s.most:
            lines.append(_("Most satisfied: {list}").format(list=", ".join(
                f"{html.escape(report.name(c))} {r:.1f}★" for c, r in s.most[:5])))
        if s.least:
            lines.append(_("Least satisfied: {list}").format(list=", ".join(
                f"{html.escape(report.name(c))} {r:.1f}★" for c, r in s.least[:5])))
        if s.by_product:
            lines.append(_("By product: {list}").format(list=", ".join(
                f"{html.escape(k or '—')} {v:.1f}★" for k, v in sorted(s.by_product.items(), key=lambda x: (-x[1], str(x[0]))))))
        if not s.most:
            lines.append(_("No ratings in this period."))
    return "\n".join(lines)


def report_charts(report: Report, user: User, _: Gettext | None = None) -> list[tuple[str, bytes]]:
    """The digest's charts: sales by region, RFM segments now and before, the monthly trend."""
    _ = _ or gettext_for(user.language)
    names = segment_names(_)
    out = []
    regions = [(s.label or _("unknown"), s.amount_cents / 100) for s in report.distribution["region"]]
    if any(v for _label, v in regions):
        out.append(("regions.png", charts.pie(_("Sales by region"), regions, other=_("other"))))
    before = report.rfm.segments_before
    segments = sorted(set(report.rfm.segments) | set(before), key=lambda s: (-report.rfm.segments.get(s, 0), SEGMENTS.index(s)))
    if segments:
        out.append(("rfm.png", charts.bars(_("RFM segments: now (before)"), [
            (f"{names[s]} ({before.get(s, 0)})", report.rfm.segments.get(s, 0)) for s in segments])))
    if report.trend:
        # The month the period ends in is not over yet unless the period ends on its last day.
        partial = (report.period.end + timedelta(days=1)).day != 1 and \
            report.trend[-1][0] == report.period.end.strftime("%Y-%m")
        out.append(("trend.png", charts.lines(
            _("Sales per month"), [m for m, _a, _b in report.trend],
            [(_("this year"), [a / 100 for _m, a, _b in report.trend]),
             (_("a year earlier"), [b / 100 for _m, _a, b in report.trend])],
            y_format=lambda v: short_amount(v, user.language), partial_last=partial,
            note=_("Dashed: {month} up to {day}, not over yet").format(
                month=report.trend[-1][0], day=report.period.end.isoformat()) if partial else "")))
    return out


def daily_text(d: Daily, user: User, currency: str, _: Gettext | None = None) -> str:
    _ = _ or gettext_for(user.language)
    lines = ["<b>" + _("☀️ Yesterday in your team ({date})").format(date=day(d.day, user.language)) + "</b>",
             _("Contacts logged: {count}").format(count=d.contacts),
             _("Orders: {count}, {amount}").format(count=d.orders, amount=money(d.amount_cents, currency, user.language))]
    if d.new_complaints:
        lines.append(_("New complaints: {count}").format(count=len(d.new_complaints)))
        lines += [f"  · {html.escape(name)}: {html.escape((text or '')[:80])}" for name, text in d.new_complaints[:5]]
    else:
        lines.append(_("No new complaints."))
    if d.open_escalations:
        lines.append(_("🚨 Overdue customers waiting for you: {count} — see /today").format(count=d.open_escalations))
    return "\n".join(lines)


# The report's heavy parts, as the bot's worker process runs them (bot.background): building the report
# over every customer, drawing its charts and writing its workbook are seconds of Python at 100k customers.

# Only the text and pictures go back to the bot's process: at 1M customers the report itself is ~200 MB
# of objects, and pickling it over to the bot took 1.4 s of a prepared report's 2.7 s (bench/digest_bench.py).

async def report_summary(sessions, *, language: str, currency: str, scope_name: str | None = None,
                         **options) -> tuple[str, list[tuple[str, bytes]]]:
    """The report's summary text and its charts (services.reports.build_apart: prepared or built), in the
    worker process."""
    from types import SimpleNamespace

    from services.reports import build_apart

    report = await build_apart(sessions, language=language, **options)
    reader, _ = SimpleNamespace(language=language), gettext_for(language)
    return summary(report, reader, currency, scope=scope_name, _=_), report_charts(report, reader, _=_)


async def report_detail(sessions, *, analysis: str, language: str, currency: str, **options) -> str | None:
    """One analysis of the report as text (None: nothing to show), in the worker process."""
    from types import SimpleNamespace

    from services.reports import build_apart

    report = await build_apart(sessions, language=language, **options)
    return detail(report, analysis, SimpleNamespace(language=language), currency, _=gettext_for(language))


async def report_workbook(sessions, folder: str, *, language: str, scope_name: str | None, by: str,
                          generated, **options) -> tuple[str, bytes]:
    """The report as a workbook (its file name and bytes), built and written in the worker process; the
    file is written in `folder` (a temporary folder the caller removes)."""
    from pathlib import Path

    from services.reports import build_apart, write_xlsx

    report = await build_apart(sessions, language=language, **options)
    _ = gettext_for(language)
    name = f"report-{report.kind}-{report.period.end.isoformat()}.xlsx"
    headings = xlsx_headings(_) | {"about": xlsx_about(report, _, language, scope=scope_name, by=by,
                                                       generated=generated)}
    return name, write_xlsx(report, Path(folder) / name, headings).read_bytes()
