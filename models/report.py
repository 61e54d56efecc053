"""Prepared reports (services.reports, rule "a prepared report is never stale").

`ReportChange` counts the changes of the data a manager's report reads; database triggers (migration 0014)
keep it, so no writer — the bot, the importer, the API, a restore, a hand-made SQL statement — can change
that data without moving the count. Purchases are counted per purchase day (`part="purchase"`: a report
only reads purchases up to the end of its period, so today's orders leave yesterday's reports valid),
interactions per UTC day and hour (`part="contact"`, the hour in `shard // 8`: a report reads those of
its period's local days); customers' report columns (but their last contact) and feedback in one count,
`part="customer"` (migration 0016); people's names, dictionaries and contact strategies in another,
`part="other"`. On PostgreSQL each count is also spread over 8 rows by the
writing transaction's id (`shard % 8`) so that concurrent writers seldom wait for one another's row; a
count is the sum of its rows.

`ReportContactChange` lists the customers whose last contact changed, and on which (UTC) day: a prepared
report reads those customers' last contacts afresh (a contact logged today moves it; team activity reads
it), so the day's contacts do not make every report be built again. Rows older than a few days go.

`ReportCustomerChange` lists the customers whose purchases, interactions, feedback or report columns
changed (added and removed ones too), and on which (UTC) days (migration 0016; a row per customer and day,
on PostgreSQL per transaction too): a prepared report that such
changes made out of date is brought up to date for those customers only (services.reports), instead of
being built again from every row.

`ReportSnapshot` is one report built for one scope and options, with the counts it was built at.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, Column, LargeBinary
from sqlmodel import Field, SQLModel

from models.common import utcnow


class ReportChange(SQLModel, table=True):
    __tablename__ = "report_change"

    part: str = Field(primary_key=True, max_length=8)  # "purchase", "contact", "customer" or "other"
    day: date = Field(primary_key=True)  # the purchase day, the interaction's UTC day; 0001-01-01 for "other"
    shard: int = Field(default=0, primary_key=True)  # contact: UTC hour × 8; + on PostgreSQL the transaction id % 8
    n: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))


class ReportContactChange(SQLModel, table=True):
    __tablename__ = "report_contact_change"

    customer_id: int = Field(primary_key=True)  # no foreign key: a log kept by a trigger, pruned by date
    changed_on: date = Field(index=True)  # UTC day of the last change


class ReportCustomerChange(SQLModel, table=True):
    """Appended to, never updated: an update of a row would lock it, and two transactions writing the same
    customers in another order would wait for each other in a circle (PostgreSQL)."""

    __tablename__ = "report_customer_change"

    customer_id: int = Field(primary_key=True)  # no foreign key: a log kept by triggers, pruned by date
    changed_on: date = Field(primary_key=True, index=True)  # UTC day of the change
    # PostgreSQL: the writing transaction's id; SQLite: 0
    txn: int = Field(default=0, sa_column=Column(BigInteger, primary_key=True, nullable=False, default=0))


class ReportSnapshot(SQLModel, table=True):
    __tablename__ = "report_snapshot"

    key: str = Field(primary_key=True, max_length=64)  # hash of the scope and the options (services.reports)
    made_for: date  # the day the report was asked on ("today": its period ends the day before)
    version: str = Field(max_length=64)  # the change counts it was built at
    made_at: datetime = Field(default_factory=utcnow)
    data: bytes = Field(sa_column=Column(LargeBinary, nullable=False))  # the pickled report, compressed
    # what it was made from (services.reports.Inputs), pickled and compressed apart: read only to bring it up to date
    inputs: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
