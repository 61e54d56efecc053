"""Every setting of FieldCRM, read from the environment or a `.env` file (see README, "Configuration")."""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

ROOT = Path(__file__).resolve().parent.parent
LANGUAGES = ("zh_Hans", "zh_Hant", "en")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    bot_token: SecretStr | None = Field(default=None, description="Telegram bot token; empty = offline sandbox")
    bot_api_url: str | None = Field(default=None, description="Self-hosted Bot API server base URL")
    webhook_url: str | None = Field(default=None, description="Public HTTPS URL for the webhook; empty = long polling")
    webhook_secret: SecretStr | None = Field(default=None, description="Secret token Telegram sends with webhook calls")
    api_secret: SecretStr | None = Field(default=None, description="Key the API tokens are hashed with; empty = a "
                                         "file DATA_DIR/api_secret made on first use (set it on every instance "
                                         "when several share one database)")
    admin_ids: Annotated[list[int], NoDecode] = Field(default_factory=list, description="Telegram ids of admins")
    data_dir: Path = Field(default=ROOT / "data", description="Where the SQLite file, exports and backups live")
    database_url: str | None = Field(default=None, description="SQLAlchemy async URL; empty = SQLite in DATA_DIR")
    redis_url: str | None = Field(default=None, description="Redis for FSM storage when running several instances")
    default_language: str = Field(default="zh_Hans", description="zh_Hans, zh_Hant or en")
    default_timezone: str = Field(default="Asia/Shanghai", description="IANA time zone for new users")
    currency: str = Field(default="CNY", description="ISO currency code amounts are recorded in")
    reps_see_unassigned: bool = Field(default=True, description="Reps may see and take unassigned customers")
    route_visit_minutes: int = Field(default=30, ge=5, le=480, description="/route: minutes planned per customer visit")
    route_speed_kmh: float = Field(default=30.0, gt=0, le=130, description="/route: average driving speed between "
                                   "visits (km/h; straight-line distance × 1.3 for roads)")
    http_host: str = Field(default="127.0.0.1")
    http_port: int = Field(default=8080)
    log_level: str = Field(default="INFO")
    log_format: Literal["text", "json"] = Field(default="text", description="json: one JSON object per log line, "
                                                "with update_id, user_id, handler and request_id")
    sandbox_start: datetime | None = Field(default=None, description="Sandbox only: the scheduler clock's start "
                                           "(ISO date-time with offset); empty = now")

    @field_validator("bot_token", "bot_api_url", "webhook_url", "webhook_secret", "database_url", "redis_url",
                     "sandbox_start", "api_secret", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        """`BOT_TOKEN=` (the usual .env template line) means "not set", like leaving the line out."""
        if isinstance(value, str) and not value.strip():
            return None
        return value.strip() if isinstance(value, str) else value

    @field_validator("bot_token")
    @classmethod
    def _token_shape(cls, value: SecretStr | None) -> SecretStr | None:
        """Telegram tokens are `<bot id>:<secret>`; aiogram refuses anything else when the bot is made."""
        if value is not None:
            left, sep, right = value.get_secret_value().partition(":")
            if not (sep and left.isdigit() and right) or any(c.isspace() for c in right):
                raise ValueError("not a Telegram bot token")
        return value

    @field_validator("admin_ids", mode="before")
    @classmethod
    def _split_ids(cls, value: object) -> object:
        if isinstance(value, str):
            return [int(part) for part in value.replace(";", ",").split(",") if part.strip()]
        if isinstance(value, int):
            return [value]
        return value

    @field_validator("sandbox_start")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("needs a UTC offset, e.g. 2026-11-29T03:00+08:00")
        return value

    @field_validator("default_language")
    @classmethod
    def _known_language(cls, value: str) -> str:
        if value not in LANGUAGES:
            raise ValueError(f"must be one of {', '.join(LANGUAGES)}")
        return value

    @field_validator("default_timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("not a known IANA time zone") from None
        return value

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        if value.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ValueError("must be DEBUG, INFO, WARNING or ERROR")
        return value.upper()

    @field_validator("http_port")
    @classmethod
    def _port(cls, value: int) -> int:
        if not 0 < value < 65536:
            raise ValueError("must be a port number 1-65535")
        return value

    def api_key(self) -> bytes:
        """The key API tokens are hashed with (services.tokens): API_SECRET, else DATA_DIR/api_secret, which
        is made (readable by this user only) the first time it is needed."""
        if self.api_secret is not None:
            return self.api_secret.get_secret_value().encode()
        import os
        import secrets

        path = self.data_dir / "api_secret"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:  # another process made it meanwhile
                pass
            else:
                with os.fdopen(descriptor, "w") as fh:
                    fh.write(secrets.token_urlsafe(48))
        return path.read_text().strip().encode()

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            url = self.database_url
            # Accept the URLs hosting providers hand out and pick the async driver for them.
            for prefix in ("postgres://", "postgresql://"):
                if url.startswith(prefix):
                    return "postgresql+asyncpg://" + url[len(prefix):]
            return url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'fieldcrm.sqlite3').resolve()}"


@lru_cache
def get_settings() -> Settings:
    return Settings()
