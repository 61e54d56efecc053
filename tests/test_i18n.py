"""Every message a user can see exists, translated, in zh_Hans, zh_Hant and en, and renders."""

import re
import string
from pathlib import Path

import pytest
from babel.messages.pofile import read_po

from bot.i18n import LANGUAGES, gettext_for, pick_language
from locales.update import extract

LOCALES = Path(__file__).resolve().parent.parent / "locales"
CODE_IDS = {m.id for m in extract() if m.id}


def catalogue(language):
    with (LOCALES / language / "LC_MESSAGES" / "messages.po").open("rb") as fh:
        return read_po(fh)


def test_the_code_has_messages_to_translate():
    assert len(CODE_IDS) > 50


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_message_in_the_code_is_translated(language):
    translated = {m.id: m.string for m in catalogue(language) if m.id}
    missing = sorted(CODE_IDS - set(translated))
    empty = sorted(i for i in CODE_IDS & set(translated) if not translated[i])
    assert missing == [] and empty == [], f"run `python locales/update.py`: missing={missing[:5]} empty={empty[:5]}"


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_translation_keeps_the_placeholders_and_renders(language):
    gettext = gettext_for(language)
    for message_id in CODE_IDS:
        wanted = {name for _, name, _, _ in string.Formatter().parse(message_id) if name}
        text = gettext(message_id)
        got = {name for _, name, _, _ in string.Formatter().parse(text) if name}
        assert got == wanted, (language, message_id, text)
        rendered = text.format(**{name: "X" for name in wanted})
        assert rendered.strip()
        if language != "en":
            assert re.search(r"[\u4e00-\u9fff]", rendered), (language, message_id)  # really translated


def test_traditional_catalogue_uses_traditional_characters():
    hant = {m.id: m.string for m in catalogue("zh_Hant") if m.id}
    assert hant["customer not found"] == "找不到該客戶"
    assert "数" not in "".join(hant.values())  # a Simplified-only character


@pytest.mark.parametrize("code, language", [
    ("zh-hans", "zh_Hans"), ("zh-CN", "zh_Hans"), ("zh", "zh_Hans"), ("zh-TW", "zh_Hant"), ("zh-hk", "zh_Hant"),
    ("zh-hant", "zh_Hant"), ("en-US", "en"), ("en", "en"), ("ru", "zh_Hans"), (None, "zh_Hans"),
])
def test_telegram_language_codes_map_to_a_supported_language(code, language):
    assert pick_language(code) == language
