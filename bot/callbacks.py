"""Callback data of inline buttons (aiogram CallbackData factories: typed, validated, ≤ 64 bytes)."""

from aiogram.filters.callback_data import CallbackData


class CustomerCallback(CallbackData, prefix="cust"):
    action: str  # card
    id: int


class LogCallback(CallbackData, prefix="log"):
    kind: str  # visit, call
    id: int  # customer


class NextStepCallback(CallbackData, prefix="next"):
    interaction: int
    days: int  # 0: no next step; -1: I'll type the date


class OrderCallback(CallbackData, prefix="order"):
    step: str  # start, skip_products, day
    id: int = 0  # customer (start)
    days_ago: int = 0  # day: 0 today, 1 yesterday


class LanguageCallback(CallbackData, prefix="lang"):
    code: str


class FeedbackCallback(CallbackData, prefix="fb"):
    step: str  # start, kind, skip_product, rating, resolve
    id: int = 0  # customer (start) or complaint (resolve)
    value: str = ""  # kind, or rating ("0" = skip)


class ReminderCallback(CallbackData, prefix="rem"):
    action: str  # snooze, done
    id: int  # reminder
    days: int = 0  # snooze: 1, 3 or 7


class ReassignCallback(CallbackData, prefix="reas"):
    customer: int
    reminder: int = 0  # the escalation it came from (services close it when the owner changes)
    to: int = 0  # 0: show the team to pick from
