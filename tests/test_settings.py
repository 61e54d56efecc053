"""Settings come from the environment (or .env) with documented defaults; secrets stay secret."""

import pytest
from pydantic import ValidationError

from bot.settings import Settings


def test_defaults_run_on_sqlite_in_the_data_directory(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    for name in ("DATABASE_URL", "BOT_TOKEN", "DATA_DIR", "ADMIN_IDS"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings()
    assert settings.bot_token is None and settings.admin_ids == []
    assert settings.effective_database_url.startswith("sqlite+aiosqlite:///")
    assert settings.effective_database_url.endswith("data/fieldcrm.sqlite3")


def test_environment_overrides_and_hosting_style_postgres_urls(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BOT_TOKEN", "123:abc")
    monkeypatch.setenv("ADMIN_IDS", "11, 22;33")
    monkeypatch.setenv("DATABASE_URL", "postgres://crm:pw@db:5432/crm")
    settings = Settings()
    assert settings.admin_ids == [11, 22, 33]
    assert settings.effective_database_url == "postgresql+asyncpg://crm:pw@db:5432/crm"
    assert "123:abc" not in repr(settings) and settings.bot_token.get_secret_value() == "123:abc"


def test_dotenv_file_is_read(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DEFAULT_LANGUAGE", raising=False)
    (tmp_path / ".env").write_text("DEFAULT_LANGUAGE=en\nHTTP_PORT=9000\n")
    settings = Settings()
    assert (settings.default_language, settings.http_port) == ("en", 9000)


def test_an_unsupported_language_is_refused(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DEFAULT_LANGUAGE", "fr")
    with pytest.raises(ValidationError):
        Settings()
