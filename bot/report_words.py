"""The words of the managers' reports that the workbook needs — sheet and column titles, segment and
period names, the cover sheet — apart from bot.report_view so that `export report` imports neither the bot
framework nor the charts (issue 21: half of a workbook's time went to imports)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from services.rfm import RFM_DAYS

if TYPE_CHECKING:
    from services.reports import Report

Gettext = Callable[[str], str]


def feedback_kind_names(_: Gettext) -> dict[str, str]:
    return {"complaint": _("complaint"), "suggestion": _("suggestion"), "inquiry": _("inquiry"), "praise": _("praise")}


def segment_names(_: Gettext) -> dict[str, str]:
    return {"champions": _("champions"), "cant_lose": _("can't lose them — gone quiet"),
            "at_risk": _("valuable, drifting away — visit first"), "loyal": _("loyal"), "new": _("new buyer"),
            "potential": _("potential"), "hibernating": _("hibernating"), "lost": _("lost"), "none": _("no purchase")}


def period_name(kind: str, _: Gettext) -> str:
    return {"week": _("week"), "month": _("month"), "quarter": _("quarter"), "year": _("year")}.get(kind, kind)


def rfm_scope_note(report: Report, _: Gettext) -> str:
    """What the report's RFM scores are (services.rfm): the cards' own, or re-scored over another window."""
    if report.rfm_window.days == RFM_DAYS:
        return _("Scores rank each customer among all the company's buyers over the 365 days to {end}, as the "
                 "customer cards do.").format(end=report.rfm_window.end.isoformat())
    return _("Re-scored over these {days} days for this report: the customer cards use the last {default} days.") \
        .format(days=report.rfm_window.days, default=RFM_DAYS)


def xlsx_headings(_: Gettext) -> dict:
    return {
        "continued": _("continued on {sheet}"),
        "segments": segment_names(_),
        "kinds": feedback_kind_names(_),
        "sheets": {"about": _("About"), "rfm": _("RFM"), "churn": _("Visit first"), "key_accounts": _("Key accounts"),
                   "distribution": _("Distribution"), "performance": _("Sales by customer"),
                   "rep_performance": _("Sales by rep"), "complaints": _("Complaints"), "activity": _("Team activity"),
                   "satisfaction": _("Satisfaction"), "trend": _("Monthly sales"), "segments": _("Segments"),
                   "movement": _("Segment movement"), "extremes": _("Growth and decline"),
                   "weekly": _("Contacts per week"), "crowded": _("Several reps in a week")},
        "columns": {"code": _("Customer code"), "customer": _("Customer"), "owner": _("Rep"), "segment": _("Segment"),
                    "segment_before": _("Segment before"), "r_before": _("R before"), "r_now": _("R now"),
                    "f_before": _("F before"), "f_now": _("F now"),
                    "amount_before": _("Amount before"), "rank": _("Rank"), "amount": _("Amount"),
                    "share": _("Share"), "amount_last_year": _("A year earlier"), "change": _("Change"),
                    "rank_change": _("Rank change"), "dimension": _("Dimension"), "value": _("Value"),
                    "customers": _("Customers"), "customer_share": _("Share of customers"),
                    "amount_share": _("Share of sales"), "region": _("Region"), "scale": _("Scale"),
                    "nature": _("Nature"), "industry": _("Industry"), "change_amount": _("Change (amount)"),
                    "count": _("Count"), "kind": _("Kind"), "product": _("Product"), "open": _("Open"),
                    "resolved": _("Resolved"), "median_hours": _("Median hours to resolve"),
                    "interactions": _("Contacts"), "within_cycle": _("Within cycle"), "group": _("Group"),
                    "rating": _("Rating"), "most_satisfied": _("Most satisfied"),
                    "least_satisfied": _("Least satisfied"), "month": _("Month"),
                    "customers_before": _("Customers before"), "change_count": _("Change"),
"top_total": _("Top total"), "top_growth": _("Top growth"),
                    "top_decline": _("Top decline"), "open_total": _("Open up to the period's end"),
                    "oldest_open": _("Oldest open"), "since": _("Since"), "week": _("Week"), "reps": _("Reps"), "from": _("From"),
                    "to": _("To"), "note": _("Note"), "partial": _("part of the month")},
    }


def xlsx_about(report: Report, _: Gettext, language: str, *, scope: str | None, by: str,
               generated: datetime) -> list[tuple[str, str]]:
    """The workbook's cover: what it covers, for whom, made when and by whom."""
    p, w, y = report.period, report.rfm_window, report.period.year_before()
    return [
        (_("This workbook"), _("FieldCRM report: {period}").format(period=period_name(report.kind, _))),
        (_("Period"), f"{p.start.isoformat()} – {p.end.isoformat()}"),
        (_("Compared with"), f"{y.start.isoformat()} – {y.end.isoformat()}"),
        (_("Customers"), scope or _("all customers you may see")),
        (_("RFM window"), _("{start} – {end} ({days} days of purchases)").format(
            start=w.start.isoformat(), end=w.end.isoformat(), days=w.days)),
        (_("RFM scores"), rfm_scope_note(report, _)),
        (_("Generated"), generated.strftime("%Y-%m-%d %H:%M %Z").strip()),
        (_("By"), by),
    ]
