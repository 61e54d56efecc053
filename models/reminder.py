"""Reminders (提醒) and the outbox every message to a user goes through.

A `Reminder` is one thing a user should act on (follow up a customer, a business-decline alert, a
birthday…). It is created once per `key` — recipient + reason + subject + period — so computing the
same reminder again (another worker, a restarted one) never makes a second row. Users snooze or finish
reminders; activity (an interaction, a purchase) closes them.

An `OutboxMessage` is a message to send, written in the same transaction as what caused it and sent
later by the single sender (bot.sender), again unique per `key`.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Index, text
from sqlmodel import Field, SQLModel

from models.common import utcnow


class Reminder(SQLModel, table=True):
    __tablename__ = "reminder"
    __table_args__ = (
        Index("ix_reminder_user_status", "user_id", "status"),
        Index("ix_reminder_customer_status", "customer_id", "status"),
        # The scan reads the keys of the open reminders each time (services.reminders.apply).
        Index("ix_reminder_open_keys", "status", "key", sqlite_where=text("status = 'open'"),
              postgresql_where=text("status = 'open'")),
    )

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(max_length=200, unique=True)
    user_id: int = Field(foreign_key="app_user.id")
    customer_id: int | None = Field(default=None, foreign_key="customer.id")
    kind: str = Field(max_length=24)
    # The contact person (birthday), interaction (next step) or purchase the reminder is about.
    subject_id: int | None = Field(default=None)
    due_on: date  # the recipient's local date it fell due
    priority: int = Field(default=50)  # lower comes first in a digest
    detail: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False, default=dict))
    status: str = Field(default="open", max_length=16)  # open, done, closed (by activity)
    snoozed_until: date | None = Field(default=None)  # hidden until this local date
    created_at: datetime = Field(default_factory=utcnow)
    closed_at: datetime | None = Field(default=None)


class OutboxMessage(SQLModel, table=True):
    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_pending", "status", "next_attempt_at"),)

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(max_length=200, unique=True)
    chat_id: int = Field(sa_column=Column(BigInteger, nullable=False, index=True))
    user_id: int | None = Field(default=None, foreign_key="app_user.id")
    kind: str = Field(max_length=16)  # digest, urgent, notice, report
    text: str | None = Field(default=None)
    reply_markup: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    photo: str | None = Field(default=None, max_length=500)  # a file path (sent with the text as caption)
    document: str | None = Field(default=None, max_length=500)
    not_before: datetime = Field(default_factory=utcnow)  # inside the recipient's working hours
    next_attempt_at: datetime = Field(default_factory=utcnow)
    status: str = Field(default="pending", max_length=16)  # pending, sent, failed
    attempts: int = Field(default=0)
    claimed_until: datetime | None = Field(default=None)  # a sender is working on it until then
    sent_at: datetime | None = Field(default=None)
    message_id: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    error: str | None = Field(default=None, max_length=500)
    created_at: datetime = Field(default_factory=utcnow)
