"""Maintain the gettext catalogues: `python locales/update.py` (inside the project's venv).

1. extracts every `_()`, `N_()`, `__()` and `lazy_gettext()` message from the code into messages.pot;
2. merges it into locales/{zh_Hans,zh_Hant,en}/LC_MESSAGES/messages.po (new ids added, gone ids dropped);
3. fills empty English entries with the id itself, and empty Traditional Chinese entries from the
   Simplified one through OpenCC (s2twp) — review those by hand.
A test fails when any catalogue misses an id or leaves one untranslated. `.mo` files are compiled by
the project's setup, never committed.
"""

from __future__ import annotations

from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import extract as run_extract
from babel.messages.pofile import read_po, write_po

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
KEYWORDS = {"_": None, "N_": None, "__": None, "lazy_gettext": None, "gettext": None}
SKIP = {".venv", "tests", "bench", "migrations", "locales", "data", ".git"}
LANGUAGES = ("zh_Hans", "zh_Hant", "en")


def extract() -> Catalog:
    template = Catalog(project="FieldCRM", fuzzy=False)
    for top in sorted(ROOT.iterdir()):
        if top.name in SKIP or top.name.startswith("."):
            continue
        if top.is_file() and top.suffix == ".py":
            sources = [(top.name, top)]
        elif top.is_dir():
            sources = [(str(p.relative_to(ROOT)), p) for p in sorted(top.rglob("*.py"))]
        else:
            continue
        for name, path in sources:
            with path.open("rb") as fh:

                for lineno, message, comments, _context in run_extract("python", fh, keywords=KEYWORDS):
                    template.add(message, locations=[(name, lineno)], auto_comments=comments)
    return template


def main() -> None:
    template = extract()
    with (HERE / "messages.pot").open("wb") as fh:
        write_po(fh, template, omit_header=True, no_location=True, sort_output=True)
    converter = None
    hans: Catalog | None = None
    for language in LANGUAGES:
        po = HERE / language / "LC_MESSAGES" / "messages.po"
        po.parent.mkdir(parents=True, exist_ok=True)
        if po.exists():
            with po.open("rb") as fh:
                catalog = read_po(fh)
            catalog.update(template, no_fuzzy_matching=True)
            catalog.obsolete.clear()
        else:
            catalog = Catalog(project="FieldCRM")
            for message in template:
                if message.id:
                    catalog.add(message.id)
        for message in catalog:
            if not message.id or message.string:
                continue
            if language == "en":
                message.string = message.id
            elif language == "zh_Hant" and hans is not None:
                source = hans.get(message.id)
                if source is not None and source.string:
                    if converter is None:
                        import opencc
                        converter = opencc.OpenCC("s2twp")
                    message.string = converter.convert(source.string)
        with po.open("wb") as fh:
            write_po(fh, catalog, no_location=True, sort_output=True, omit_header=False)
        if language == "zh_Hans":
            hans = catalog
        missing = sum(1 for m in catalog if m.id and not m.string)
        print(f"{language}: {len(catalog)} messages, {missing} untranslated")


if __name__ == "__main__":
    main()
