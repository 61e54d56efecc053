"""Callback data of inline buttons (aiogram CallbackData factories: typed, validated, ≤ 64 bytes)."""

from typing import Annotated

from aiogram.filters.callback_data import CallbackData
from pydantic import Field

# Ids are database keys (32-bit on PostgreSQL): a forged or garbled button with anything else does not
# match any handler (aiogram's filter treats invalid data as no match) and is answered as out of date.
DbId = Annotated[int, Field(ge=0, le=2**31 - 1)]
Days = Annotated[int, Field(ge=-1, le=3660)]


class CustomerCallback(CallbackData, prefix="cust"):
    action: str  # card
    id: DbId


class LogCallback(CallbackData, prefix="log"):
    kind: str  # visit, call
    id: DbId  # customer


class NextStepCallback(CallbackData, prefix="next"):
    interaction: DbId
    days: Days  # 0: no next step; -1: I'll type the date


class OrderCallback(CallbackData, prefix="order"):
    step: str  # start, skip_products, day
    id: DbId = 0  # customer (start)
    days_ago: Days = 0  # day: 0 today, 1 yesterday


class LanguageCallback(CallbackData, prefix="lang"):
    code: str


class FeedbackCallback(CallbackData, prefix="fb"):
    step: str  # start, kind, skip_product, rating, resolve
    id: DbId = 0  # customer (start) or complaint (resolve)
    value: str = ""  # kind, or rating ("0" = skip)


class ReminderCallback(CallbackData, prefix="rem"):
    action: str  # snooze, done
    id: DbId  # reminder
    days: Days = 0  # snooze: 1, 3 or 7


class ReassignCallback(CallbackData, prefix="reas"):
    customer: DbId
    reminder: DbId = 0  # the escalation it came from (services close it when the owner changes)
    to: DbId = 0  # 0: show the team to pick from


class SettingsCallback(CallbackData, prefix="set"):
    action: str  # lang, tz, zone (value: an IANA name), tz_other, hours, day (value: ISO weekday)
    value: str = ""


class HistoryCallback(CallbackData, prefix="hist"):
    id: DbId  # customer
    page: Days = 0
    new: bool = False  # True: send a new message (from a card or a search), else turn the page in place


class NewCustomerCallback(CallbackData, prefix="new"):
    step: str  # start (the last search's text as the name), anyway, skip_phone, region, stage, strategy
    value: str = ""


class EditCallback(CallbackData, prefix="edit"):
    id: DbId  # customer
    field: str = ""  # "": the menu; a field name: ask for it
    value: str = ""  # dictionary fields: the entry id ("0": clear)


class StageCallback(CallbackData, prefix="stage"):
    id: DbId  # customer
    stage: str = ""  # "": show the stages


class ContactCallback(CallbackData, prefix="cp"):
    step: str  # list, add, anyway, skip, key, edit (a contact's field menu), field, archive
    id: DbId = 0  # customer (list, add), contact person (key, edit, field, archive)
    field: str = ""  # field: name, title, mobile, birthday


class NearbyCallback(CallbackData, prefix="near"):
    radius: Days  # km
    lat: float
    lon: float


class ReportCallback(CallbackData, prefix="rep"):
    period: str = ""  # week, month, quarter, year ("" = choose)
    show: str = "summary"  # summary, an analysis (services.reports.ANALYSES), xlsx, reps
    rep: DbId = 0  # 0: the whole scope; else one rep of the team
    window: Days = 365  # days of purchases RFM looks at (services.reports.RFM_WINDOWS)


class TeamChatCallback(CallbackData, prefix="team"):
    manager: DbId  # the manager whose weekly report this group gets


class AuditCallback(CallbackData, prefix="audit"):
    id: DbId  # customer
