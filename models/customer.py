"""The customer record (客户档案) and its contact persons (联系人, §3)."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import JSON, BigInteger, Column, Index, SmallInteger, event, text
from sqlmodel import Field, SQLModel

from models.common import Stage, utcnow

# Partial covering indexes for the reminder rules (services.reminders): each rule reads a range of one of
# them and never the table, so a scan over a million customers only touches the customers that are due.
_LIVE = "archived_at IS NULL AND owner_id IS NOT NULL"


def _partial(name: str, where: str, *columns: str) -> Index:
    return Index(name, *columns, sqlite_where=text(where), postgresql_where=text(where))


class Customer(SQLModel, table=True):
    __tablename__ = "customer"
    __table_args__ = (
        Index("ix_customer_owner_active", "owner_id", "archived_at"),
        Index("ix_customer_origin", "origin_key", unique=True),
        _partial("ix_customer_contact_clock", _LIVE,
                 "contact_strategy_id", "last_contact_at", "created_at", "owner_id", "stage", "archived_at"),
        _partial("ix_customer_purchase_clock", _LIVE, "purchase_strategy_id", "last_txn_on", "owner_id",
                 "purchase_gap_days", "last_contact_at", "archived_at"),
        _partial("ix_customer_not_now", "stage = 'not_now' AND archived_at IS NULL", "expected_purchase_on", "owner_id",
                 "stage", "archived_at"),
        _partial("ix_customer_quoted", "stage = 'quoted_no_response' AND archived_at IS NULL",
                 "last_contact_at", "created_at", "owner_id", "stage", "archived_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    external_id: str | None = Field(default=None, max_length=64, unique=True)  # ERP code
    name: str = Field(max_length=200, index=True)
    short_name: str | None = Field(default=None, max_length=100)
    aliases: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False, default=list))

    region_id: int | None = Field(default=None, foreign_key="dictionary_entry.id", index=True)
    nature_id: int | None = Field(default=None, foreign_key="dictionary_entry.id")
    source_id: int | None = Field(default=None, foreign_key="dictionary_entry.id")
    category_id: int | None = Field(default=None, foreign_key="dictionary_entry.id")
    industry_id: int | None = Field(default=None, foreign_key="dictionary_entry.id")
    scale_id: int | None = Field(default=None, foreign_key="dictionary_entry.id")
    years_in_business_id: int | None = Field(default=None, foreign_key="dictionary_entry.id")
    industry_standing_id: int | None = Field(default=None, foreign_key="dictionary_entry.id")
    settlement_method_id: int | None = Field(default=None, foreign_key="dictionary_entry.id")
    contact_strategy_id: int | None = Field(default=None, foreign_key="contact_strategy.id")
    purchase_strategy_id: int | None = Field(default=None, foreign_key="purchase_strategy.id")

    credit_rating: int | None = Field(default=None, ge=1, le=5)
    employees: int | None = Field(default=None, ge=0)
    wants_agency: bool = Field(default=False)
    phone: str | None = Field(default=None, max_length=64)
    fax: str | None = Field(default=None, max_length=64)
    email: str | None = Field(default=None, max_length=200)
    website: str | None = Field(default=None, max_length=200)
    address: str | None = Field(default=None, max_length=300)
    postcode: str | None = Field(default=None, max_length=16)
    latitude: float | None = Field(default=None)
    longitude: float | None = Field(default=None)
    notes: str | None = Field(default=None)

    owner_id: int | None = Field(default=None, foreign_key="app_user.id")
    stage: str = Field(default=Stage.interested, max_length=32)  # prospects: the partial indexes above
    expected_purchase_on: date | None = Field(default=None)  # stage "not now": when they expect to buy
    lost_reason: str | None = Field(default=None)  # stage "definitely not": why

    # Roll-ups, maintained by services.rollups in the same transaction as the rows they summarise.
    txn_count: int = Field(default=0)
    txn_amount_cents: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
    first_txn_on: date | None = Field(default=None)
    last_txn_on: date | None = Field(default=None)
    last_contact_at: datetime | None = Field(default=None)
    # The customer's own purchase rhythm: median days between purchase days, once they bought 4+ times.
    purchase_gap_days: float | None = Field(default=None)
    # RFM scores 1–5 (services.rfm), refreshed daily, for the window ending rfm_scored_on; None without a
    # purchase in that window.
    rfm_r: int | None = Field(default=None, sa_column=Column(SmallInteger, nullable=True))
    rfm_f: int | None = Field(default=None, sa_column=Column(SmallInteger, nullable=True))
    rfm_m: int | None = Field(default=None, sa_column=Column(SmallInteger, nullable=True))
    rfm_segment: str | None = Field(default=None, max_length=16)  # services.rfm.SEGMENTS, scored with R, F, M
    rfm_scored_on: date | None = Field(default=None)

    archived_at: datetime | None = Field(default=None)  # customers are archived, never deleted
    origin_key: str | None = Field(default=None, max_length=80)  # the input that created it (models.activity.ORIGIN)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class ContactPerson(SQLModel, table=True):
    __tablename__ = "contact_person"
    __table_args__ = (Index("ix_contact_person_birthday", "birthday_mmdd"),
                      Index("ix_contact_person_origin", "origin_key", unique=True))

    id: int | None = Field(default=None, primary_key=True)
    customer_id: int = Field(foreign_key="customer.id", index=True)
    name: str = Field(max_length=100, index=True)
    title: str | None = Field(default=None, max_length=100)  # 职务
    mobile: str | None = Field(default=None, max_length=64)
    office_phone: str | None = Field(default=None, max_length=64)
    home_phone: str | None = Field(default=None, max_length=64)
    wechat: str | None = Field(default=None, max_length=64)
    email: str | None = Field(default=None, max_length=200)
    address: str | None = Field(default=None, max_length=300)
    birthday: date | None = Field(default=None)
    # month * 100 + day of the birthday, so "whose birthday is on 03-15" is an index lookup.
    birthday_mmdd: int | None = Field(default=None)
    family_birthdays: str | None = Field(default=None)
    hobbies: str | None = Field(default=None)
    native_place: str | None = Field(default=None, max_length=100)
    education: str | None = Field(default=None, max_length=200)
    background: str | None = Field(default=None)
    decision_role: str | None = Field(default=None, max_length=16)
    friendliness: int | None = Field(default=None, ge=1, le=5)
    best_call_time: str | None = Field(default=None, max_length=100)
    preferences: str | None = Field(default=None)
    is_key: bool = Field(default=False)
    archived_at: datetime | None = Field(default=None)
    origin_key: str | None = Field(default=None, max_length=80)  # the input that created it
    created_at: datetime = Field(default_factory=utcnow)


@event.listens_for(ContactPerson, "before_insert")
@event.listens_for(ContactPerson, "before_update")
def _derive_birthday_mmdd(_mapper, _connection, person: ContactPerson) -> None:
    person.birthday_mmdd = person.birthday.month * 100 + person.birthday.day if person.birthday else None
