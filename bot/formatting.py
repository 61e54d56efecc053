"""Dates, durations and money the way each language writes them (Babel)."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from babel.dates import format_date, format_timedelta
from babel.numbers import format_currency

BABEL = {"zh_Hans": "zh_Hans_CN", "zh_Hant": "zh_Hant_TW", "en": "en"}


def locale(language: str) -> str:
    return BABEL.get(language, "en")


def day(value: date | datetime, language: str, timezone: str = "Asia/Shanghai") -> str:
    if isinstance(value, datetime):
        value = value.astimezone(ZoneInfo(timezone)).date()
    return format_date(value, format="medium", locale=locale(language))


def ago(days: int, language: str) -> str:
    """When something happened, in local calendar days: “today”, “yesterday”, then the exact number of days
    (“45 days ago”, “45天前”; never rounded to months, since cycles are counted in days)."""
    from bot.i18n import gettext_for

    if days <= 0:
        return gettext_for(language)("today")
    if days == 1:
        return gettext_for(language)("yesterday")
    return format_timedelta(timedelta(days=-days), granularity="day", threshold=100000, add_direction=True,
                            locale=locale(language))


def duration(days: int, language: str) -> str:
    return format_timedelta(timedelta(days=days), granularity="day", locale=locale(language))


def short_amount(value: float, language: str) -> str:
    """An axis number the way people say big amounts: 3.5万 / 1.2亿 in Chinese, 35k / 1.2M in English."""
    units = ((1e8, "亿"), (1e4, "万")) if language.startswith("zh") else ((1e9, "B"), (1e6, "M"), (1e3, "k"))
    size = abs(value)
    for unit, name in units:
        if size >= unit:
            text = f"{value / unit:,.{0 if size >= unit * 100 else 1}f}"
            return (text.rstrip("0").rstrip(".") if "." in text else text) + name
    return f"{value:,.0f}"


def money(cents: int, currency: str, language: str) -> str:
    return format_currency(cents / 100, currency, locale=locale(language))


def days(count: int, language: str) -> str:
    """An exact number of days (“45 days”, “45天”), never rounded to weeks or months."""
    return format_timedelta(timedelta(days=count), granularity="day", threshold=100000, locale=locale(language))
