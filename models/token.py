"""API tokens: how a program (the ERP's sync job) is let into the HTTP API. Only a keyed hash of the token
is kept (services.tokens); the token itself is shown once, when it is made."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from models.common import utcnow


class ApiToken(SQLModel, table=True):
    __tablename__ = "api_token"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=64, unique=True)
    scope: str = Field(default="read", max_length=8)  # read, write
    digest: str = Field(max_length=64)  # HMAC-SHA256 of the token with the server's secret, hex
    user_id: int | None = Field(default=None, foreign_key="app_user.id")  # sees what this person sees; None: all
    created_at: datetime = Field(default_factory=utcnow)
    last_used_at: datetime | None = Field(default=None)
    revoked_at: datetime | None = Field(default=None)
