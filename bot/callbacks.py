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


class SettingsCallback(CallbackData, prefix="set"):
    action: str  # lang, tz, zone (value: an IANA name), tz_other, hours, day (value: ISO weekday)
    value: str = ""


class HistoryCallback(CallbackData, prefix="hist"):
    id: int  # customer
    page: int = 0
    new: bool = False  # True: send a new message (from a card or a search), else turn the page in place


class NewCustomerCallback(CallbackData, prefix="new"):
    step: str  # start (the last search's text as the name), anyway, skip_phone, region, stage, strategy
    value: str = ""


class EditCallback(CallbackData, prefix="edit"):
    id: int  # customer
    field: str = ""  # "": the menu; a field name: ask for it
    value: str = ""  # dictionary fields: the entry id ("0": clear)


class StageCallback(CallbackData, prefix="stage"):
    id: int  # customer
    stage: str = ""  # "": show the stages


class ContactCallback(CallbackData, prefix="cp"):
    step: str  # list, add, anyway, skip, key, edit (a contact's field menu), field, archive
    id: int = 0  # customer (list, add), contact person (key, edit, field, archive)
    field: str = ""  # field: name, title, mobile, birthday


class NearbyCallback(CallbackData, prefix="near"):
    radius: int  # km
    lat: float
    lon: float


class ReportCallback(CallbackData, prefix="rep"):
    period: str = ""  # week, month, quarter, year ("" = choose)
    show: str = "summary"  # summary, an analysis (services.reports.ANALYSES), xlsx, reps
    rep: int = 0  # 0: the whole scope; else one rep of the team
    window: int = 365  # days of purchases RFM looks at (services.reports.RFM_WINDOWS)


class TeamChatCallback(CallbackData, prefix="team"):
    manager: int  # the manager whose weekly report this group gets
