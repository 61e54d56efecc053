"""Invitations: how a new person gets into the bot (deep link `/start <code>`)."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from models.common import Role, utcnow


class Invite(SQLModel, table=True):
    __tablename__ = "invite"

    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(max_length=64, unique=True)
    role: str = Field(default=Role.rep, max_length=16)
    manager_id: int | None = Field(default=None, foreign_key="app_user.id")
    created_by_id: int | None = Field(default=None, foreign_key="app_user.id")
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime
    used_at: datetime | None = Field(default=None)
    used_by_id: int | None = Field(default=None, foreign_key="app_user.id")
