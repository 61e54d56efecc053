"""Callback data of inline buttons (aiogram CallbackData factories: typed, validated, ≤ 64 bytes)."""

from typing import Annotated, Literal

from aiogram.filters.callback_data import CallbackData
from pydantic import AfterValidator, Field

# Ids are database keys (32-bit on PostgreSQL): a forged or garbled button with anything else does not
# match any handler (aiogram's filter treats invalid data as no match) and is answered as out of date.
DbId = Annotated[int, Field(ge=0, le=2**31 - 1)]
Days = Annotated[int, Field(ge=-1, le=3660)]


def _one_of(*allowed: int) -> object:
    """An int field that only takes these values (button data arrives as text, which Literal[int] refuses)."""
    def check(value: int) -> int:
        if value not in allowed:
            raise ValueError(f"not one of {allowed}")
        return value
    return Annotated[int, AfterValidator(check)]


# Fields with a fixed set of values are Literals: a forged or garbled value fails to unpack the same way.
STAGES = Literal["", "interested", "hesitating", "not_now", "definitely_not", "quoted_no_response", "customer"]
FEEDBACK_VALUES = Literal["", "complaint", "suggestion", "inquiry", "praise", "0", "1", "2", "3", "4", "5"]


class CustomerCallback(CallbackData, prefix="cust"):
    action: Literal["card"]
    id: DbId


class LogCallback(CallbackData, prefix="log"):
    kind: Literal["visit", "call"]
    id: DbId  # customer


class NextStepCallback(CallbackData, prefix="next"):
    interaction: DbId
    days: Days  # 0: no next step; -1: I'll type the date


class OrderCallback(CallbackData, prefix="order"):
    step: Literal["start", "skip_products", "day"]
    id: DbId = 0  # customer (start)
    days_ago: _one_of(0, 1) = 0  # day: 0 today, 1 yesterday


class LanguageCallback(CallbackData, prefix="lang"):
    code: Literal["zh_Hans", "zh_Hant", "en"]


class FeedbackCallback(CallbackData, prefix="fb"):
    step: Literal["start", "kind", "skip_product", "rating", "resolve"]
    id: DbId = 0  # customer (start) or complaint (resolve)
    value: FEEDBACK_VALUES = ""  # kind, or rating ("0" = skip)


class ReminderCallback(CallbackData, prefix="rem"):
    action: Literal["snooze", "done"]
    id: DbId  # reminder
    days: _one_of(0, 1, 3, 7) = 0  # snooze: 1, 3 or 7


class AgendaCallback(CallbackData, prefix="ag"):
    """The agenda's buttons: a page (◀ ▶), one item's actions (its number), and done / snooze from there."""

    action: Literal["page", "item", "done", "snooze"]
    page: Annotated[int, Field(ge=0, le=999)] = 0
    id: DbId = 0  # reminder (item, done, snooze)
    days: _one_of(0, 1, 3, 7) = 0  # snooze: 1, 3 or 7


class ReassignCallback(CallbackData, prefix="reas"):
    customer: DbId
    reminder: DbId = 0  # the escalation it came from (services close it when the owner changes)
    to: DbId = 0  # 0: show the team to pick from


class SettingsCallback(CallbackData, prefix="set"):
    # zone: value is an IANA name; day: ISO weekday; map: value is a navigator ("" = by language);
    # visit: minutes per customer visit ("" = the team's default)
    action: Literal["lang", "tz", "zone", "tz_other", "hours", "day", "maps", "map", "visits", "visit"]
    value: str = ""


class HistoryCallback(CallbackData, prefix="hist"):
    id: DbId  # customer
    page: Days = 0
    new: bool = False  # True: send a new message (from a card or a search), else turn the page in place


class NewCustomerCallback(CallbackData, prefix="new"):
    # start (the last search's text as the name), anyway, skip_phone, region, stage, strategy
    step: Literal["start", "anyway", "skip_phone", "region", "stage", "strategy"]
    value: str = ""


class EditCallback(CallbackData, prefix="edit"):
    id: DbId  # customer
    field: str = ""  # "": the menu; a field name: ask for it
    value: str = ""  # dictionary fields: the entry id ("0": clear)


class StageCallback(CallbackData, prefix="stage"):
    id: DbId  # customer
    stage: STAGES = ""  # "": show the stages


class ContactCallback(CallbackData, prefix="cp"):
    step: Literal["list", "add", "anyway", "skip", "key", "edit", "field", "archive"]  # edit: a contact's field menu
    id: DbId = 0  # customer (list, add), contact person (key, edit, field, archive)
    field: Literal["", "name", "title", "mobile", "birthday", "yes"] = ""  # archive: "yes" confirms


class NearbyCallback(CallbackData, prefix="near"):
    radius: Days  # km
    lat: float
    lon: float


class ReportCallback(CallbackData, prefix="rep"):
    period: Literal["", "week", "month", "quarter", "year"] = ""  # "" = choose
    show: Literal["summary", "xlsx", "reps", "rfm", "churn", "key_accounts", "distribution", "performance",
                  "complaints", "activity", "satisfaction"] = "summary"  # or an analysis of services.reports.ANALYSES
    rep: DbId = 0  # 0: the whole scope; else one rep of the team
    window: _one_of(90, 180, 365, 730) = 365  # days of purchases RFM looks at (services.reports.RFM_WINDOWS)


class TeamChatCallback(CallbackData, prefix="team"):
    manager: DbId  # the manager whose weekly report this group gets


class AuditCallback(CallbackData, prefix="audit"):
    id: DbId  # customer


class RouteCallback(CallbackData, prefix="route"):
    """"🗺 Plan my route" under /today and the morning digest: starts /route."""

    action: Literal["plan"]


class NameCardCallback(CallbackData, prefix="nc"):
    """Under a business card's summary (handlers.namecard): save, fix a field, pick the customer, the stage."""

    action: Literal["save", "fix", "field", "back", "cancel", "to", "new", "stage"]
    field: Literal["", "company", "name", "title", "mobile", "office", "fax", "email", "website", "address"] = ""
    id: DbId = 0  # customer (to)
    stage: STAGES = ""
    anyway: bool = False  # to: add even though a contact of that name or number is there
