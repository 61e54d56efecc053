"""Shared column helpers and the domain's enumerations.

Conventions: every timestamp is an aware UTC datetime (SQLModel's UTCDateTime returns UTC from SQLite
and PostgreSQL alike, and refuses naive values); every money
amount is an integer number of cents (exact sums on both backends); enumerations are short strings
validated in Python, so adding a value never needs a database type migration.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from sqlalchemy import MetaData
from sqlmodel import SQLModel

# Stable constraint names, so Alembic migrations name things the same way on every backend.
SQLModel.metadata.naming_convention = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
metadata: MetaData = SQLModel.metadata


class Clock:
    """The process's one clock: handlers, services and jobs all read it (through `utcnow` / `today_in`),
    so when the offline sandbox moves time (⏩) a visit logged afterwards is as late as the reminder it
    answers. Only the sandbox moves it; everywhere else the offset stays zero."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset


CLOCK = Clock()


def utcnow() -> datetime:
    """Now, as an aware UTC datetime (the form every timestamp column takes)."""
    return CLOCK.now()


def today_in(timezone: str) -> date:
    """Today's date where the person is (an IANA zone name)."""
    return CLOCK.now().astimezone(ZoneInfo(timezone)).date()


def as_utc(moment: datetime | None) -> datetime | None:
    """A stored timestamp as an aware UTC datetime (SQLite hands timestamps back without a zone; they
    are always UTC)."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


class ReminderKind(StrEnum):
    """What a reminder is about (services.reminders; a digest lists them in services.reminders.PRIORITY order)."""
    escalation = "escalation"  # to the manager: a team member's customer is far overdue
    next_step = "next_step"
    contact_overdue = "contact_overdue"
    birthday = "birthday"
    thank_you = "thank_you"
    purchase_lapse = "purchase_lapse"
    not_now = "not_now"
    quoted = "quoted"
    contact_due = "contact_due"


class ReminderStatus(StrEnum):
    open = "open"
    done = "done"  # the person ticked it off
    closed = "closed"  # closed by activity (a contact, an order, a reassignment)


class OutboxKind(StrEnum):
    digest = "digest"
    urgent = "urgent"
    notice = "notice"
    report = "report"


class OutboxStatus(StrEnum):
    pending = "pending"
    sent = "sent"
    failed = "failed"


class Role(StrEnum):
    rep = "rep"
    manager = "manager"
    admin = "admin"


class DictionaryKind(StrEnum):
    """The system dictionaries (系统字典)."""

    region = "region"
    nature = "nature"
    source = "source"
    category = "category"
    industry = "industry"
    scale = "scale"
    years_in_business = "years_in_business"
    industry_standing = "industry_standing"
    settlement_method = "settlement_method"


class Stage(StrEnum):
    """Relationship stage of a prospect (客户关系类型); `customer` once they buy."""

    interested = "interested"
    hesitating = "hesitating"
    not_now = "not_now"
    definitely_not = "definitely_not"
    quoted_no_response = "quoted_no_response"
    customer = "customer"


class InteractionKind(StrEnum):
    """Channels of contact (交往记录)."""

    visit = "visit"
    call = "call"
    email = "email"
    chat = "chat"
    message = "message"  # WeChat / SMS
    letter = "letter"
    gift = "gift"
    event = "event"


class DecisionRole(StrEnum):
    """Role of a contact person in the purchase decision."""

    initiator = "initiator"
    influencer = "influencer"
    buyer = "buyer"
    user = "user"
    decider = "decider"


class FeedbackKind(StrEnum):
    complaint = "complaint"
    suggestion = "suggestion"
    inquiry = "inquiry"
    praise = "praise"


class FeedbackStatus(StrEnum):
    open = "open"
    resolved = "resolved"


class PaymentStatus(StrEnum):
    unpaid = "unpaid"
    partial = "partial"
    paid = "paid"
