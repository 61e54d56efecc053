"""Prepared reports (services.reports, rule "a prepared report is never stale").

`ReportChange` counts the changes of the data a manager's report reads; database triggers (migration 0013)
keep it, so no writer — the bot, the importer, the API, a restore, a hand-made SQL statement — can change
that data without moving the count. Purchases are counted per purchase day (a report only reads purchases
up to the end of its period, so today's orders leave yesterday's reports valid); everything else a report
reads (customers' report columns, interactions, feedback, people's names, dictionaries, contact
strategies) in one count, `part="other"`. On PostgreSQL each count is split over 8 rows (`shard`) so that concurrent
writers seldom wait for one another's row; the count is the sum.

`ReportSnapshot` is one report built for one scope and options, with the counts it was built at.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, Column, LargeBinary
from sqlmodel import Field, SQLModel

from models.common import utcnow


class ReportChange(SQLModel, table=True):
    __tablename__ = "report_change"

    part: str = Field(primary_key=True, max_length=8)  # "purchase" (per purchase day) or "other"
    day: date = Field(primary_key=True)  # the purchase day; 0001-01-01 for "other"
    shard: int = Field(default=0, primary_key=True)  # PostgreSQL: the writing transaction's id modulo 8
    n: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))


class ReportSnapshot(SQLModel, table=True):
    __tablename__ = "report_snapshot"

    key: str = Field(primary_key=True, max_length=64)  # hash of the scope and the options (services.reports)
    made_for: date  # the day the report was asked on ("today": its period ends the day before)
    version: str = Field(max_length=64)  # the change counts it was built at
    made_at: datetime = Field(default_factory=utcnow)
    data: bytes = Field(sa_column=Column(LargeBinary, nullable=False))  # the pickled Report, compressed
