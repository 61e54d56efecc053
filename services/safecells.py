"""Cells that cannot turn into formulas (OWASP "CSV injection"): what a rep types into a name or a note must
come out of every export as the same text, never as something a spreadsheet runs.

Rules:
- XLSX: every text cell is written as a string cell, never as a formula, whatever it starts with.
- CSV: a text cell starting with = + - @ tab or carriage return is prefixed with an apostrophe, so
  spreadsheets show it as text; so is one that starts with an apostrophe followed by one of those (or by
  another apostrophe), so that importing the file back gives exactly the original text.
- Import (CSV): an apostrophe followed by one of those characters or an apostrophe is dropped — the
  reverse of the export, so export → import is the identity.
"""

from __future__ import annotations

from typing import Any

_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
_ESCAPED = ("'",) + _TRIGGERS


def defuse_csv(value: str) -> str:
    """A text value as it goes into a CSV cell (see the module rules)."""
    if value.startswith(_TRIGGERS) or (value.startswith("'") and value[1:2].startswith(_ESCAPED) and len(value) > 1):
        return "'" + value
    return value


class Verbatim(str):
    """Text restored from a defused cell: taken exactly as it is (no trimming of a leading tab)."""


def restore_csv(value: str) -> str:
    """A CSV cell's text as it was before `defuse_csv`."""
    if value.startswith("'") and len(value) > 1 and value[1:2].startswith(_ESCAPED):
        return Verbatim(value[1:])
    return value


def as_text_cells(cells: Any) -> None:
    """openpyxl takes any text starting with "=" for a formula: make those cells plain strings again."""
    for cell in cells:
        if cell.data_type == "f":
            cell.data_type = "s"
