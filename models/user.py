"""People who use the bot: reps, managers, admins."""

from __future__ import annotations

from datetime import datetime, time

from sqlalchemy import BigInteger, Column
from sqlmodel import Field, SQLModel

from models.common import Role, utcnow


class User(SQLModel, table=True):
    __tablename__ = "app_user"

    id: int | None = Field(default=None, primary_key=True)
    telegram_id: int | None = Field(default=None, sa_column=Column(BigInteger, unique=True, nullable=True))
    name: str = Field(max_length=120)
    role: str = Field(default=Role.rep, max_length=16, index=True)
    manager_id: int | None = Field(default=None, foreign_key="app_user.id", index=True)
    territory_id: int | None = Field(default=None, foreign_key="dictionary_entry.id")
    language: str = Field(default="zh_Hans", max_length=16)
    timezone: str = Field(default="Asia/Shanghai", max_length=64)
    work_start: time = Field(default=time(9, 0))
    work_end: time = Field(default=time(18, 0))
    # ISO weekdays the user works, e.g. "12345" = Monday to Friday.
    work_days: str = Field(default="12345", max_length=7)
    # The map app /route's links open ("amap", "apple", "google"); None: by language (services.route).
    navigator: str | None = Field(default=None, max_length=8)
    # Minutes /route plans per customer visit; None: the server's ROUTE_VISIT_MINUTES (services.route).
    visit_minutes: int | None = Field(default=None)
    active: bool = Field(default=True)
    # A team group chat an admin bound to this manager: their weekly report goes there (not to them).
    team_chat_id: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    # Set when Telegram says the chat is gone (bot blocked, chat not found): stop sending until cleared.
    unreachable_at: datetime | None = Field(default=None)
    unreachable_reason: str | None = Field(default=None, max_length=200)
    created_at: datetime = Field(default_factory=utcnow)
