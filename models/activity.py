"""Behavioural records: interactions (交往记录), purchases (交易记录), feedback (客户反馈).

Users only ever add these rows; a correction is an audited edit (see services.purchases) and a
mistaken purchase is voided, never deleted (DOMAIN.md §5 retention).
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import JSON, BigInteger, Column, Index
from sqlmodel import Field, SQLModel

from models.common import FeedbackStatus, PaymentStatus, utcnow


class Interaction(SQLModel, table=True):
    __tablename__ = "interaction"
    __table_args__ = (
        Index("ix_interaction_customer_time", "customer_id", "occurred_at"),
        Index("ix_interaction_user_time", "user_id", "occurred_at"),
        Index("ix_interaction_next_step", "next_step_on"),
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
    created_at: datetime = Field(default_factory=utcnow)


class Purchase(SQLModel, table=True):
    __tablename__ = "purchase"
    __table_args__ = (
        # A customer's purchases in date order; covering, so the reports' year-long per-customer sums read
        # it in customer order (no sorting for GROUP BY) without table lookups.
        Index("ix_purchase_customer_cover", "customer_id", "purchased_on", "amount_cents", "voided_at"),
        # Covers the period scans of the reports (date range → customer, amount, voided) without table lookups.
        Index("ix_purchase_date_cover", "purchased_on", "customer_id", "amount_cents", "voided_at"),
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
    voided_at: datetime | None = Field(default=None)
    created_at: datetime = Field(default_factory=utcnow)


class Feedback(SQLModel, table=True):
    __tablename__ = "feedback"
    __table_args__ = (Index("ix_feedback_status_kind", "status", "kind"),)

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
