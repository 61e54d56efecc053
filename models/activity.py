"""Behavioural records: interactions (交往记录), purchases (交易记录), feedback (客户反馈).

Users only ever add these rows; a correction is an audited edit (see services.purchases) and a
mistaken purchase is voided, never deleted (records are kept for years).
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import JSON, BigInteger, Column, Index, Text
from sqlmodel import Field, SQLModel

from models.common import FeedbackStatus, PaymentStatus, utcnow

# Limits of what people type, declared once here and enforced by services (the bot, the CLI and the API
# get the same rules). The feedback product column is VARCHAR(200).
NOTE_LIMIT = 4000  # Interaction.summary
PRODUCTS_LIMIT = 2000  # Purchase.products
FEEDBACK_PRODUCT_LIMIT = 200  # Feedback.product
FEEDBACK_TEXT_LIMIT = 4000  # Feedback.text, Feedback.resolution


class Interaction(SQLModel, table=True):
    __tablename__ = "interaction"
    __table_args__ = (
        Index("ix_interaction_customer_time", "customer_id", "occurred_at"),
        Index("ix_interaction_user_time", "user_id", "occurred_at"),
        Index("ix_interaction_next_step", "next_step_on"),
        Index("ix_interaction_origin", "origin_key", unique=True),
    )

    id: int | None = Field(default=None, primary_key=True)
    customer_id: int = Field(foreign_key="customer.id")
    contact_person_id: int | None = Field(default=None, foreign_key="contact_person.id")
    user_id: int | None = Field(default=None, foreign_key="app_user.id")
    kind: str = Field(max_length=16)
    occurred_at: datetime
    summary: str | None = Field(default=None)
    outcome: str | None = Field(default=None)
    next_step: str | None = Field(default=None)
    next_step_on: date | None = Field(default=None)
    latitude: float | None = Field(default=None)
    longitude: float | None = Field(default=None)
    # Telegram file ids or stored file names of photos and documents.
    attachments: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False, default=list))
    origin_key: str | None = Field(default=None, max_length=80)  # see ORIGIN below
    created_at: datetime = Field(default_factory=utcnow)


class Purchase(SQLModel, table=True):
    __tablename__ = "purchase"
    __table_args__ = (
        # A customer's purchases in date order; covering, so the reports' year-long per-customer sums read
        # it in customer order (no sorting for GROUP BY) without table lookups.
        Index("ix_purchase_customer_cover", "customer_id", "purchased_on", "amount_cents", "voided_at"),
        # Covers the period scans of the reports (date range → customer, amount, voided) without table lookups.
        Index("ix_purchase_date_cover", "purchased_on", "customer_id", "amount_cents", "voided_at"),
        Index("ix_purchase_origin", "origin_key", unique=True),
    )

    id: int | None = Field(default=None, primary_key=True)
    customer_id: int = Field(foreign_key="customer.id")
    order_no: str | None = Field(default=None, max_length=64, unique=True)
    purchased_on: date
    products: str | None = Field(default=None)
    quantity: float | None = Field(default=None)
    amount_cents: int = Field(sa_column=Column(BigInteger, nullable=False))
    payment_method: str | None = Field(default=None, max_length=64)
    payment_status: str = Field(default=PaymentStatus.paid, max_length=16)
    source: str = Field(default="chat", max_length=16)  # chat, import, api
    recorded_by_id: int | None = Field(default=None, foreign_key="app_user.id")
    origin_key: str | None = Field(default=None, max_length=80)  # see ORIGIN below
    voided_at: datetime | None = Field(default=None)
    created_at: datetime = Field(default_factory=utcnow)


class Feedback(SQLModel, table=True):
    __tablename__ = "feedback"
    __table_args__ = (Index("ix_feedback_status_kind", "status", "kind"),
                      Index("ix_feedback_origin", "origin_key", unique=True))

    id: int | None = Field(default=None, primary_key=True)
    customer_id: int = Field(foreign_key="customer.id", index=True)
    user_id: int | None = Field(default=None, foreign_key="app_user.id")
    kind: str = Field(max_length=16)
    product: str | None = Field(default=None, max_length=200)
    rating: int | None = Field(default=None, ge=1, le=5)
    text: str | None = Field(default=None)
    status: str = Field(default=FeedbackStatus.open, max_length=16)
    created_at: datetime = Field(default_factory=utcnow, index=True)
    resolved_at: datetime | None = Field(default=None)
    resolved_by_id: int | None = Field(default=None, foreign_key="app_user.id")
    resolution: str | None = Field(default=None)
    origin_key: str | None = Field(default=None, max_length=80)  # see ORIGIN below


ORIGIN = """origin_key: the input that created the row, e.g. `tg:<chat id>:<message id>` for the message (or the
tapped button's message) that saved it in the bot. Unique: the same input arriving twice (a double tap, a
redelivered update) is recognised and returns the row it made the first time instead of adding a second."""


class HandledUpdate(SQLModel, table=True):
    """A Telegram update the bot has handled, written in the update's own transaction: a redelivered update
    (polling after a crash, a webhook retry) finds its id here and is not applied twice. Kept 3 days.
    `conversation`: the conversation-state changes the update made (bot.fsm.pack), kept with it so that a
    redelivered copy still moves the conversation on when the process died before they reached the state
    storage (they are written there only after the commit)."""

    __tablename__ = "handled_update"

    update_id: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    handled_at: datetime = Field(default_factory=utcnow, index=True)
    conversation: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
