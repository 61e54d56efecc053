"""Translations for every front end (bot, CLI, HTTP). Catalogues live in locales/<lang>/LC_MESSAGES/messages.po
and are compiled to .mo by the project's setup (bootstrap.py), the same files aiogram's I18n loads."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from babel.support import NullTranslations, Translations

LOCALES_DIR = Path(__file__).resolve().parent.parent / "locales"
DOMAIN = "messages"
LANGUAGES = ("zh_Hans", "zh_Hant", "en")


@cache
def translations(language: str) -> NullTranslations:
    if language not in LANGUAGES:
        language = "en"
    if not (LOCALES_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.mo").exists():
        raise RuntimeError(
            f"locales/{language}/LC_MESSAGES/{DOMAIN}.mo is missing: run through `python main.py ...`, "
            "which compiles the catalogues"
        )
    return Translations.load(str(LOCALES_DIR), [language], DOMAIN)


def gettext_for(language: str):
    return translations(language).gettext


def pick_language(code: str | None, default: str = "zh_Hans") -> str:
    """A supported language for a Telegram / HTTP language code (zh-hans, zh-CN, zh-TW, zh-hk, en-US …)."""
    if not code:
        return default
    code = code.replace("_", "-").lower()
    if code in ("zh-hant", "zh-tw", "zh-hk", "zh-mo") or code.startswith("zh-hant"):
        return "zh_Hant"
    if code.startswith("zh"):
        return "zh_Hans"
    if code.startswith("en"):
        return "en"
    return default
