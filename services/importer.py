"""Importing customers, contacts, purchases and interactions from CSV or XLSX files (ERP exports).

Rules:
- Validation first: the whole file is read and every problem reported as (row, column, value, why);
  a file with any problem changes nothing. A clean file is applied in the caller's one transaction.
- Files: CSV in UTF-8, UTF-8 with BOM or GBK/GB18030 (detected), comma / semicolon / tab separated;
  XLSX (first sheet). Headers: English field names or the Chinese labels (Simplified or Traditional).
- Upsert: customers by external id (ERP code) or, without one, by exact name; contacts by customer +
  name; purchases by order number, or without one by customer + date + amount + products (re-importing
  the same file adds nothing); interactions by customer + time + channel.
- Blank cells leave existing values unchanged. Dictionary values match any locale's label or the code.
- Streaming: rows are read, checked and written in batches, so memory does not grow with the file.
- Roll-ups of every touched customer are brought forward (new orders only) or refreshed before the
  transaction ends (services.rollups).
"""

from __future__ import annotations

import codecs
import csv
import itertools
import pickle
import re
import tempfile
import time as clock
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, func, insert, literal_column, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from models import ContactPerson, Customer, Feedback, Interaction, Purchase, Stage, User, today_in, utcnow
from services import audit, reminders, rollups
from services.dictionaries import Vocabulary, load_vocabulary
from services.fields import FIELDS_BY_KIND, FieldSpec, header_key, header_map, is_blank, parse_value
from services.messages import N_, DomainError, Problem
from services.parsing import DATE_ORDERS, AmbiguousDate, date_order_shown, fold_width
from services.safecells import Verbatim, restore_csv
from services.sql import among, lock_in_order, unique_columns, value_chunks

KINDS = tuple(FIELDS_BY_KIND)
BATCH = 2000
MAX_REPORTED = 1000
Progress = Callable[[str, int, int | None], None]


@dataclass
class RowError:
    row: int
    column: str
    value: str
    problem: Problem


@dataclass
class ImportReport:
    kind: str
    rows: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    errors: list[RowError] = field(default_factory=list)
    error_count: int = 0
    ignored_columns: list[str] = field(default_factory=list)
    applied: bool = False
    encoding: str | None = None  # how a CSV file was decoded
    sheet: str | None = None  # which sheet of a workbook was read
    summary_rows: list[int] = field(default_factory=list)  # totals rows (合计 …) skipped

    @property
    def ok(self) -> bool:
        return self.error_count == 0

    def add_error(self, row: int, column: str, value: Any, problem: Problem) -> None:
        self.error_count += 1
        if len(self.errors) < MAX_REPORTED:
            self.errors.append(RowError(row, column, "" if value is None else str(value), problem))


class FileProblem(DomainError):
    """The file as a whole cannot be read (format, encoding, headers)."""


# --------------------------------------------------------------------------- reading files


@dataclass
class Table:
    headers: list[str]
    rows: Iterator[tuple[int, list[Any]]]  # (row number as the user sees it, cells)
    total: int | None
    encoding: str | None = None  # how a text file was decoded (shown in the summary)
    sheet: str | None = None  # which sheet of a workbook was read
    records: bool = False  # rows a program sent (the ERP API): no totals-row guessing


SAMPLE = 1 << 20  # bytes looked at to tell the encoding
FIELD_LIMIT = 1_000_000  # characters in one CSV field before the file is taken as broken
# What a decoded CJK business file never contains: private-use characters (what Big5 bytes become when
# read as GBK), kana and Greek/Cyrillic/box-drawing runs from the wrong code page, C0/C1 controls.
_IMPLAUSIBLE = re.compile("[\ue000-\uf8ff\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufffd]")
# Legacy code pages of Chinese-speaking offices, tried when a file is not UTF-8 (GB18030 is a superset of
# GBK and GB2312; cp950 is the Big5 Excel writes on Traditional-Chinese Windows).
_LEGACY = (("gb18030", "GB18030"), ("cp950", "Big5"))
_NAMES = {"utf-8": "UTF-8", "utf-8-sig": "UTF-8", "utf-16": "UTF-16", "utf-16-le": "UTF-16", "utf-16-be": "UTF-16",
          "gb18030": "GB18030", "gbk": "GB18030", "gb2312": "GB18030", "cp950": "Big5", "big5": "Big5",
          "big5hkscs": "Big5"}


def _decodes(data: bytes, codec: str, *, final: bool) -> str | None:
    try:
        return codecs.getincrementaldecoder(codec)().decode(data, final=final)
    except UnicodeDecodeError:
        return None


def _header_evidence(text: str, known: Callable[[str], bool]) -> int:
    """How many known column names the first lines of a decoded sample hold (with any separator)."""
    lines = text.splitlines()[:HEADER_SEARCH_ROWS]
    return max((sum(1 for cell in re.split(r"[,;\t]", line) if cell.strip().strip('"') and known(cell.strip().strip('"')))
                for line in lines), default=0)


def _detect_encoding(path: Path, known: Callable[[str], bool] | None = None) -> tuple[str, str]:
    """(codec, name to show) of a text file. Rule "never store a wrong character": a BOM, then strict UTF-8,
    then UTF-16 by its zero bytes, then the legacy code pages that decode the sample without implausible
    characters; when two remain, the one whose header names known columns, else charset-normalizer with
    a clear margin. Otherwise the file is refused with what to do (--encoding, or save as CSV UTF-8)."""
    with path.open("rb") as fh:
        sample = fh.read(SAMPLE)
        whole = len(sample) < SAMPLE
    for bom, codec, name in ((codecs.BOM_UTF8, "utf-8-sig", "UTF-8"), (codecs.BOM_UTF16_LE, "utf-16", "UTF-16"),
                             (codecs.BOM_UTF16_BE, "utf-16", "UTF-16")):
        if sample.startswith(bom) and _undecodable_at(path, codec) is None:
            return codec, name
    if _undecodable_at(path, "utf-8") is None:
        return "utf-8", "UTF-8"
    if sample.count(b"\x00") > len(sample) // 8:
        even = sample[0::2].count(b"\x00")
        codec = "utf-16-be" if even > sample[1::2].count(b"\x00") else "utf-16-le"
        text = _decodes(sample[:len(sample) // 2 * 2], codec, final=whole)
        if text is not None and not _IMPLAUSIBLE.search(text):
            return codec, "UTF-16"
    decoded = {codec: _decodes(sample, codec, final=whole) for codec, _name in _LEGACY}
    plausible = [(codec, name) for codec, name in _LEGACY
                 if decoded[codec] is not None and not _IMPLAUSIBLE.search(decoded[codec])]
    if len(plausible) > 1 and known is not None:  # the decode in which the header reads as known columns
        evidence = {codec: _header_evidence(decoded[codec], known) for codec, _name in plausible}
        top = max(evidence.values())
        if top and sum(1 for n in evidence.values() if n == top) == 1:
            plausible = [p for p in plausible if evidence[p[0]] == top]
    if len(plausible) == 1:
        return plausible[0]
    if len(plausible) > 1:
        from charset_normalizer import from_bytes

        scored = {m.encoding: m.chaos for m in from_bytes(sample, cp_isolation=[c for c, _ in plausible])}
        ranked = sorted((scored.get(codec, 1.0), codec, name) for codec, name in plausible)
        if ranked[0][0] + 0.02 <= ranked[1][0]:
            return ranked[0][1], ranked[0][2]
        raise FileProblem(N_("cannot tell whether the file is GBK or Big5 text; run again with --encoding gbk "
                             "or --encoding big5, or save it as CSV UTF-8"))
    raise FileProblem(N_("cannot tell the file's text encoding (it is not UTF-8, UTF-16, GBK or Big5); "
                         "run again with --encoding NAME, or save it as CSV UTF-8 or XLSX"))


def _undecodable_at(path: Path, codec: str) -> int | None:
    """Where the first byte that does not decode is (None: the whole file decodes)."""
    decoder = codecs.getincrementaldecoder(codec)()
    done = 0
    with path.open("rb") as fh:
        try:
            while chunk := fh.read(1 << 20):
                decoder.decode(chunk)
                done += len(chunk)
            decoder.decode(b"", final=True)
        except UnicodeDecodeError as exc:
            return done + max(exc.start, 0)
    return None


def _count_lines(path: Path) -> int:
    with path.open("rb") as fh:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 20), b""))


def _named_encoding(path: Path, encoding: str) -> tuple[str, str]:
    """An encoding the admin named (--encoding): it must exist and decode the whole file."""
    # What people call Big5 or GBK is what Excel writes: cp950 (Big5 + Microsoft's extensions: 恒 碁 墻 €)
    # and GB18030 (a superset of GBK and GB2312).
    aliases = {"big5": "cp950", "big5-tw": "cp950", "csbig5": "cp950", "gbk": "gb18030", "gb2312": "gb18030",
               "cp936": "gb18030"}
    try:
        codec = codecs.lookup(aliases.get(encoding.strip().lower(), encoding)).name
    except LookupError:
        raise FileProblem(N_("“{encoding}” is not an encoding I know"), encoding=encoding) from None
    offset = _undecodable_at(path, codec)
    if offset is not None:
        raise FileProblem(N_("the file is not {encoding} text (byte {offset} does not decode)"),
                          encoding=encoding, offset=offset)
    if codec == "utf-8":
        with path.open("rb") as fh:
            if fh.read(3) == codecs.BOM_UTF8:
                codec = "utf-8-sig"
    return codec, _NAMES.get(codec.replace("_", "-"), codec)


def _header_record(path: Path, codec: str, known: Callable[[str], bool] | None) -> tuple[str, int]:
    """(separator, index of the header record): the separator the first lines use most, and the record
    among the first HEADER_SEARCH_ROWS that names the most known columns (a title line above it, as
    accounting exports write, is passed over); the first record when none names any."""
    with path.open(encoding=codec, newline="") as fh:
        lines = [line for _, line in zip(range(HEADER_SEARCH_ROWS), fh, strict=False)]
    # csv.Sniffer is slow on big samples and guesses wrong on Chinese. The separator is the one that makes a
    # header of known columns (a data row's commas inside a tab file must not win); without one, the one the
    # first line uses most.
    fallback = max(",;\t", key=lambda d: lines[0].count(d) if lines else 0)
    if known is None:
        return fallback, 0
    best = (0, fallback, 0)  # (score, separator, record)
    for delimiter in ",;\t":
        try:
            for index, cells in enumerate(csv.reader(lines, delimiter=delimiter)):
                score = _header_score(tuple(cells), known)
                if score > best[0]:
                    best = (score, delimiter, index)
        except csv.Error:
            continue  # a broken record among the first lines: the row-by-row read reports it where it is
    return best[1], best[2]


def _open_csv(path: Path, encoding: str | None = None, known: Callable[[str], bool] | None = None) -> Table:
    codec, shown = _named_encoding(path, encoding) if encoding else _detect_encoding(path, known)
    delimiter, header_index = _header_record(path, codec, known)
    fh = path.open(encoding=codec, newline="")
    csv.field_size_limit(FIELD_LIMIT)
    reader = csv.reader(fh, delimiter=delimiter, strict=True)
    try:
        for _skipped in range(header_index):
            next(reader)
        headers = next(reader)
    except StopIteration:
        fh.close()
        raise FileProblem(N_("the file is empty")) from None
    except csv.Error:
        fh.close()
        raise FileProblem(N_("line 1 cannot be read as CSV")) from None
    width = len(headers)

    def rows() -> Iterator[tuple[int, list[Any]]]:
        with fh:
            start = reader.line_num + 1
            while True:
                try:
                    cells = next(reader)
                except StopIteration:
                    return
                except csv.Error as exc:
                    raise _broken_record(start, reader.line_num, str(exc)) from None
                except UnicodeDecodeError:
                    raise FileProblem(N_("row {row}: from here on the text is not {encoding}; save the file as "
                                         "CSV UTF-8"), row=start, encoding=shown) from None
                for column, cell in enumerate(cells) if any("\n" in cell for cell in cells) else ():
                    if "\n" in cell and _looks_like_rows(cell, delimiter, width):
                        raise FileProblem(N_("row {row}: the quoted value in column {column} runs over {lines} "
                                             "lines that look like rows of their own; a quote is probably not "
                                             "closed"), row=start, column=column + 1, lines=cell.count("\n") + 1)
                if any(cell.strip() for cell in cells):
                    yield start, [restore_csv(cell) if cell[:1] == "'" else cell for cell in cells]
                start = reader.line_num + 1

    table = Table(headers, rows(), max(_count_lines(path) - 1, 0))
    table.encoding = shown
    return table


def _broken_record(start: int, end: int, reason: str) -> FileProblem:
    if "end of data" in reason or "EOF" in reason:
        return FileProblem(N_("row {row}: a quote opened here is never closed (the file ends inside it, "
                              "line {end}); close it or remove it"), row=start, end=end)
    if "field limit" in reason:
        return FileProblem(N_("row {row}: a value is longer than {limit} characters; a quote is probably "
                              "not closed"), row=start, limit=FIELD_LIMIT)
    return FileProblem(N_("row {row} cannot be read as CSV (lines {row}–{end}): check its quotes"),
                       row=start, end=end)


def _looks_like_rows(cell: str, delimiter: str, width: int) -> bool:
    """A value with line breaks whose lines carry as many separators as a whole row: rows swallowed by a
    quote left open, not a note with line breaks."""
    if width < 3:
        return False
    lines = cell.split("\n")
    return sum(line.count(delimiter) >= width - 1 for line in lines) >= 2


HEADER_SEARCH_ROWS = 20  # a header row is looked for this far down (title blocks above it)
MAX_COLUMNS = 300  # columns looked at in a sheet; what lies to the right of the header is never read
MAX_UNPACKED = 2_000_000_000  # bytes a workbook may unpack to
MAX_RATIO = 100  # … and a part bigger than BIG_PART may not be compressed more than this (a zip bomb)
BIG_PART = 50_000_000


def _check_workbook_size(path: Path) -> None:
    """Rule "a hostile file costs seconds, not the server": the workbook's parts are measured before they
    are read; one that unpacks to gigabytes, or a part compressed like a zip bomb, is refused."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            parts = archive.infolist()
    except (zipfile.BadZipFile, OSError):
        raise FileProblem(N_("the file is not a readable XLSX workbook")) from None
    total = sum(part.file_size for part in parts)
    worst = max(parts, key=lambda part: part.file_size, default=None)
    if total > MAX_UNPACKED or (worst is not None and worst.file_size > BIG_PART
                                and worst.file_size > MAX_RATIO * max(worst.compress_size, 1)):
        raise FileProblem(N_("the workbook unpacks to {size} MB ({part}); that is not an export I can read safely"),
                          size=total // 1_000_000, part=worst.filename if worst else "")


def _header_score(cells: tuple[Any, ...], known: Callable[[str], bool]) -> int:
    return sum(1 for cell in cells if isinstance(cell, str) and cell.strip() and known(cell))


def _open_xlsx(path: Path, sheet_name: str | None = None, known: Callable[[str], bool] | None = None) -> Table:
    """The sheet and row that hold the header: the visible sheet (or the one named) whose row, within the
    first HEADER_SEARCH_ROWS, names the most known columns; title blocks and instruction sheets are passed
    over. Data rows are read only as wide as the header."""
    from openpyxl import load_workbook

    _check_workbook_size(path)
    try:
        book = load_workbook(path, read_only=True, data_only=True)
    except Exception:  # openpyxl raises many types for a broken file
        raise FileProblem(N_("the file is not a readable XLSX workbook")) from None
    try:
        sheets = [ws for ws in book.worksheets if ws.sheet_state == "visible"]
        if sheet_name is not None:
            sheets = [ws for ws in book.worksheets if ws.title == sheet_name]
            if not sheets:
                raise FileProblem(N_("the workbook has no sheet “{sheet}”; its sheets are: {sheets}"),
                                  sheet=sheet_name, sheets=", ".join(ws.title for ws in book.worksheets))
        known = known or (lambda header: True)
        best: tuple[int, Any, int, list[str]] | None = None
        seen: list[str] = []
        for ws in sheets:
            for number, cells in enumerate(ws.iter_rows(max_row=HEADER_SEARCH_ROWS, max_col=MAX_COLUMNS,
                                                        values_only=True), start=1):
                score = _header_score(cells, known)
                if score and (best is None or score > best[0]):
                    best = (score, ws, number, ["" if c is None else str(c) for c in cells])
                if len(seen) < 3 and any(not is_blank(c) for c in cells):
                    shown = ", ".join(str(c) for c in cells if not is_blank(c))[:120]
                    seen.append(f"{ws.title}!{number}: {shown}")
        if best is None:
            if not seen:
                raise FileProblem(N_("the file is empty"))
            raise FileProblem(N_("no header row I know (such as 客户名称) in the first {rows} rows; found: {found}"),
                              rows=HEADER_SEARCH_ROWS, found="; ".join(seen))
    except BaseException:
        book.close()
        raise
    _, sheet, header_row, headers = best
    while headers and not headers[-1].strip():
        headers.pop()
    formulas = _formula_reader(path, sheet.title, header_row, len(headers))
    values = sheet.iter_rows(min_row=header_row + 1, max_col=len(headers), values_only=True)

    def rows() -> Iterator[tuple[int, list[Any]]]:
        try:
            for number, cells in enumerate(values, start=header_row + 1):
                formula_cells = next(formulas, None) if formulas is not None else None
                if any(not is_blank(cell) for cell in cells):
                    # A tab or CR before a formula sign is how a cell is defused: keep it exactly (safecells).
                    row = [Verbatim(c) if isinstance(c, str) and c[:1] in ("\t", "\r") and c[1:2] in ("=", "+", "-", "@")
                           else c for c in cells]
                    if formula_cells:
                        for i, formula in enumerate(formula_cells):
                            if formula and i < len(row) and row[i] is None:
                                row[i] = UnsavedFormula(formula)
                    yield number, row
        finally:
            book.close()

    total = (sheet.max_row - header_row) if sheet.max_row else None
    table = Table(headers, rows(), total)
    table.sheet = sheet.title
    return table


class UnsavedFormula(str):
    """A formula cell whose result was never saved (written by a program that computes nothing)."""


def _has_formulas(path: Path, zipfile) -> bool:
    """Whether any worksheet holds a formula (<f> element), read in chunks (a sheet can be 100s of MB)."""
    with zipfile.ZipFile(path) as archive:
        for name in archive.namelist():
            if not name.startswith("xl/worksheets/"):
                continue
            with archive.open(name) as part:
                tail = b""
                while chunk := part.read(1 << 20):
                    window = tail + chunk
                    if b"<f>" in window or b"<f " in window:
                        return True
                    tail = window[-3:]
    return False


def _formula_reader(path: Path, title: str, header_row: int, width: int) -> Iterator[list[str | None]] | None:
    """The formulas of the data rows, row by row, when the sheet has any (most exports have none: then no
    second pass is made)."""
    import zipfile

    from openpyxl import load_workbook

    if not _has_formulas(path, zipfile):
        return None
    book = load_workbook(path, read_only=True, data_only=False)
    sheet = book[title]

    def rows() -> Iterator[list[str | None]]:
        try:
            for cells in sheet.iter_rows(min_row=header_row + 1, max_col=width, values_only=True):
                yield [c if isinstance(c, str) and c.startswith("=") else None for c in cells]
        finally:
            book.close()

    return rows()


def open_table(path: str | Path, *, encoding: str | None = None, sheet: str | None = None,
               known: Callable[[str], bool] | None = None) -> Table:
    path = Path(path)
    if not path.is_file():
        raise FileProblem(N_("no such file: {path}"), path=str(path))
    suffix = path.suffix.lower()
    if suffix in (".xlsx", ".xlsm"):
        return _open_xlsx(path, sheet, known)
    if suffix == ".xls":
        raise FileProblem(N_("old .xls files are not supported; save the sheet as XLSX or CSV"))
    return _open_csv(path, encoding, known)


# --------------------------------------------------------------------------- resolving references


@dataclass
class Context:
    kind: str
    vocabulary: Vocabulary
    tz: ZoneInfo
    today: date
    users: dict[str, int]
    customers_by_code: dict[str, int]
    customers_by_name: dict[str, int]  # -1 when several customers share the name
    code_of: dict[int, str | None]
    user_id: int | None = None  # who imports (audit)
    channel: str = "import"  # how the rows came: import (a file) or api (Purchase.source)
    date_order: str | None = None  # as the admin named it (--date-order), else per column from the rows
    orders_seen: dict[str, set[str]] = field(default_factory=dict)  # field → orders its d/m/y dates prove
    pending: dict[str, list[tuple[int, str, PendingDate]]] = field(default_factory=dict)
    resolved: dict[str, str] = field(default_factory=dict)  # field → the order its ambiguous dates follow
    # customer → what the live purchases this import added sum up to: roll-ups brought forward from them
    added: dict[int, rollups.Added] = field(default_factory=dict)


async def _load_context(session: AsyncSession, kind: str, tz: ZoneInfo, today: date,
                        wanted: tuple[set[str], set[str]] | None = None) -> Context:
    """What the rows are resolved against: users, the vocabulary, and the active customers by code and by
    name — all of them for a file, or (`wanted`: codes and names) only those a batch of records names."""
    users: dict[str, int] = {}
    for user in (await session.execute(select(User.id, User.name, User.telegram_id).order_by(User.id))).all():
        users.setdefault(header_key(user.name), user.id)
        if user.telegram_id is not None:
            users[str(user.telegram_id)] = user.id
    by_code: dict[str, int] = {}
    by_name: dict[str, int] = {}
    code_of: dict[int, str | None] = {}
    query = select(Customer.id, Customer.external_id, Customer.name).where(Customer.archived_at.is_(None))
    if wanted is None:
        queries = [query]
    else:  # a customer named by code or by name (a name shared by several must be seen as shared)
        codes, names = sorted(wanted[0]), sorted(wanted[1])
        queries = [query.where(among(session, Customer.external_id, part)) for part in value_chunks(session, codes, 2000)]
        queries += [query.where(among(session, Customer.name, part)) for part in value_chunks(session, names, 2000)]
    seen: set[int] = set()
    for part in queries:
        # Through the connection: plain rows, no ORM loading for a column query; a partition at a time.
        rows = await (await session.connection()).stream(part.order_by(Customer.id).execution_options(yield_per=10000))
        async for partition in rows.partitions():
            for cid, code, name in partition:
                if cid in seen:
                    continue
                seen.add(cid)
                if code:
                    by_code[code] = cid
                by_name[name] = -1 if name in by_name else cid
                code_of[cid] = code
    if kind != "customers":
        code_of = {}
    return Context(kind, await load_vocabulary(session), tz, today, users, by_code, by_name, code_of)


def _map_headers(table: Table, fields: tuple[FieldSpec, ...], report: ImportReport) -> list[FieldSpec | None]:
    known = header_map(fields)
    columns: list[FieldSpec | None] = []
    seen: dict[str, str] = {}
    for header in table.headers:
        spec = known.get(header_key(header)) if header and header.strip() else None
        if spec is None:
            if header and header.strip():
                report.ignored_columns.append(header)
            columns.append(None)
            continue
        if spec.name in seen:
            raise FileProblem(N_("the columns “{first}” and “{second}” are the same field"),
                              first=seen[spec.name], second=header)
        seen[spec.name] = header
        columns.append(spec)
    names = set(seen)
    for spec in fields:
        if spec.required and spec.name not in names:
            raise FileProblem(N_("the file has no “{column}” column ({english})"), column=spec.zh, english=spec.name)
    if fields[0].name == "customer_external_id" and not names & {"customer_external_id", "customer_name"}:
        raise FileProblem(N_("the file needs a customer column: “客户编号” (code) or “客户名称” (name)"))
    return columns


@dataclass
class Layout:
    """Where each known field sits in the file, worked out once per file, not once per row."""

    table: Table
    mapped: list[tuple[int, FieldSpec, str]]  # (cell index, field, header as written)
    required: list[tuple[int, FieldSpec, str]]
    refers_to_customer: bool

    def header(self, name: str) -> str:
        return next((h for _, spec, h in self.mapped if spec.name == name), name)


def _layout(table: Table, columns: list[FieldSpec | None]) -> Layout:
    mapped = [(i, spec, table.headers[i]) for i, spec in enumerate(columns) if spec is not None]
    return Layout(table, mapped, [m for m in mapped if m[1].required],
                  any(spec.name in ("customer_external_id", "customer_name") for _, spec, _ in mapped))


def _parse_row(ctx: Context, cells: list[Any], layout: Layout, number: int,
               report: ImportReport) -> dict[str, Any] | None:
    """One row → values by field name (references resolved), or None with errors added to the report."""
    values: dict[str, Any] = {}
    ok = True
    width = len(cells)
    for index, spec, header in layout.mapped:
        raw = cells[index] if index < width else None
        if raw is None or raw == "" or (isinstance(raw, str) and raw.isspace()):
            continue
        if spec.type == "phone" and isinstance(raw, str) and not any(ch.isdigit() for ch in raw):
            continue  # -, /, 无, 暂无: no number given (a blank cell)
        if isinstance(raw, UnsavedFormula):  # no saved result (or an empty one, as =IF(…,"",…) saves)
            if spec.required:
                ok = False
                report.add_error(number, header, raw, Problem(N_(
                    "a formula whose result was never saved; open the file in Excel or WPS, save it, and import "
                    "it again")))
            continue  # an optional column: blank, as the spreadsheet shows it
        try:
            if spec.type in ("date", "datetime") and ctx.date_order is None and isinstance(raw, str) \
                    and raw[4:5] != "-" and (shown := date_order_shown(raw)):
                ctx.orders_seen.setdefault(spec.name, set()).add(shown)
            try:
                value = parse_value(spec, raw, tz=ctx.tz, today=ctx.today, date_order=ctx.date_order)
            except AmbiguousDate as ambiguous:
                if spec.type != "date":
                    raise
                value = PendingDate(ambiguous.raw, ambiguous.first, ambiguous.second, ambiguous.year)
                ctx.pending.setdefault(spec.name, []).append((number, header, value))
            if spec.type in ("dict", "strategy"):
                resolved = ctx.vocabulary.match(spec.ref or "", value)
                if resolved is None:
                    raise DomainError(N_("“{value}” is not in the dictionary"), value=value)
                value = resolved
            elif spec.type in ("owner", "user"):
                resolved = ctx.users.get(header_key(value)) or ctx.users.get(value)
                if resolved is None:
                    raise DomainError(N_("no user called “{value}”"), value=value)
                value = resolved
            values[spec.name] = value
        except DomainError as exc:
            ok = False
            report.add_error(number, header, raw, exc.problem)
    if not ok:
        return None
    for _index, spec, header in layout.required:
        if spec.name not in values:
            report.add_error(number, header, "", Problem(N_("this column must not be empty")))
            ok = False
    if ok and layout.refers_to_customer:
        customer_id = _resolve_customer(ctx, values, number, layout, report)
        if customer_id is None:
            return None
        values["customer_id"] = customer_id
    return values if ok else None


def _resolve_customer(ctx: Context, values: dict[str, Any], number: int, layout: Layout,
                      report: ImportReport) -> int | None:
    code, name = values.pop("customer_external_id", None), values.pop("customer_name", None)
    if code:
        found = ctx.customers_by_code.get(code)
        if found is None:
            report.add_error(number, layout.header("customer_external_id"), code,
                             Problem(N_("no customer has the code “{value}”"), {"value": code}))
        return found
    if name:
        found = ctx.customers_by_name.get(name)
        if found is None:
            report.add_error(number, layout.header("customer_name"), name,
                             Problem(N_("no customer is called “{value}”"), {"value": name}))
            return None
        if found == -1:
            report.add_error(number, layout.header("customer_name"), name,
                             Problem(N_("several customers are called “{value}”; use the customer code"), {"value": name}))
            return None
        return found
    report.add_error(number, "", "", Problem(N_("the row names no customer")))
    return None


CUSTOMER_COLUMN = {
    "region": "region_id", "nature": "nature_id", "source": "source_id", "category": "category_id",
    "industry": "industry_id", "scale": "scale_id", "years_in_business": "years_in_business_id",
    "industry_standing": "industry_standing_id", "settlement_method": "settlement_method_id",
    "contact_strategy": "contact_strategy_id", "purchase_strategy": "purchase_strategy_id", "owner": "owner_id",
}


def _rows(ctx: Context, layout: Layout, report: ImportReport,
          progress: Progress | None, stage: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """Parsed rows, with per-kind checks that need no database: duplicates within the file, dates."""
    seen: dict[Any, int] = {}
    last = clock.monotonic()
    count = 0
    table = layout.table
    for number, cells in table.rows:
        if not table.records and _is_summary_row(cells):
            report.summary_rows.append(number)
            continue
        count += 1
        if progress and count % 256 == 0 and clock.monotonic() - last > 0.5:
            progress(stage, count, table.total)
            last = clock.monotonic()
        values = _parse_row(ctx, cells, layout, number, report)
        if values is None:
            continue
        key: Any = None
        if ctx.kind == "customers":
            key = ("code", values["external_id"]) if values.get("external_id") else ("name", values["name"])
        elif ctx.kind == "purchases" and values.get("order_no"):
            key = values["order_no"]
        elif ctx.kind == "contacts":
            key = (values["customer_id"], values["name"])
        elif ctx.kind == "feedback":
            key = (values["customer_id"], values["kind"], values["text"], values.get("created_at"))
            if not _feedback_ok(values, number, layout, report):
                continue
        if ctx.kind == "purchases" and not isinstance(values["purchased_on"], PendingDate) \
                and values["purchased_on"] > ctx.today:
            report.add_error(number, layout.header("purchased_on"), values["purchased_on"],
                             Problem(N_("a purchase cannot be in the future")))
            continue
        if key is not None:
            if key in seen:
                report.add_error(number, "", key[1] if isinstance(key, tuple) else key,
                                 Problem(N_("this row repeats row {row}"), {"row": seen[key]}))
                continue
            seen[key] = number
        yield number, values
    _decide_date_orders(ctx, report)
    report.rows = count
    if progress:
        progress(stage, count, count)


_SUMMARY_LABELS = {"合计", "总计", "小计", "合計", "總計", "小計", "总合计", "共计", "共計", "累计", "累計",
                   "total", "totals", "grandtotal", "subtotal", "sum", "summe"}
_SUMMARY_HINTS = frozenset("计計lLmMＬＭｌｍ")  # every label ends so: a cheap test before folding
_LABEL_NOISE = re.compile(r"[\s:：()（）\-_*]+")


def _is_summary_row(cells: list[Any]) -> bool:
    """Rule "a totals row is not a record": a row whose first filled cell says 合计 / 总计 / 小计 / Total
    (any width, spacing or case) sums the rows above it; it is skipped and the summary says so."""
    for cell in cells:
        if is_blank(cell):
            continue
        return (isinstance(cell, str) and len(cell) <= 24 and any(ch in cell for ch in _SUMMARY_HINTS)
                and _LABEL_NOISE.sub("", fold_width(cell)).lower() in _SUMMARY_LABELS)
    return False


@dataclass(frozen=True)
class PendingDate:
    """A d/m/y date with day and month both ≤ 12, read once the column's order is known."""

    raw: str
    first: int
    second: int
    year: int

    def resolve(self, order: str) -> date:
        return date(self.year, self.second, self.first) if order == "dmy" else date(self.year, self.first, self.second)


def _decide_date_orders(ctx: Context, report: ImportReport) -> None:
    """Rule "a column's date order is proved, not guessed": when the other rows of a column write 15/03/2026
    (day first) and none writes 03/15/2026, its 03/04/2026 is 3 April — and the other way round. A column
    with no proof, or with proof both ways, leaves each ambiguous date an error naming --date-order."""
    for name, waiting in ctx.pending.items():
        orders = ctx.orders_seen.get(name, set())
        if len(orders) != 1:
            message = (N_("“{value}” is ambiguous and this column writes dates both day-first and month-first; "
                          "write it as year-month-day") if len(orders) > 1 else
                       N_("“{value}” is ambiguous: write it as year-month-day, or import with --date-order dmy or mdy"))
            for number, header, pending in waiting:
                report.add_error(number, header, pending.raw, Problem(message, {"value": pending.raw}))
            continue
        ctx.resolved[name] = order = next(iter(orders))
        if ctx.kind == "purchases" and name == "purchased_on":
            for number, header, pending in waiting:
                if pending.resolve(order) > ctx.today:
                    report.add_error(number, header, pending.raw, Problem(N_("a purchase cannot be in the future")))
    ctx.pending.clear()


def _resolve_dates(ctx: Context, batch: list[dict[str, Any]]) -> None:
    for values in batch:
        for name, order in ctx.resolved.items():
            value = values.get(name)
            if isinstance(value, PendingDate):
                values[name] = value.resolve(order)


def _batches(rows: Iterator[tuple[int, dict[str, Any]]]) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for _number, values in rows:
        batch.append(values)
        if len(batch) >= BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


# --------------------------------------------------------------------------- applying


def _bulk_insert(model: Any, keys: frozenset[str]):
    """An executemany INSERT whose bookkeeping columns (timestamps, empty lists) are SQL expressions
    rendered once per statement instead of values bound and converted for every row."""
    table = model.__table__
    fixed: dict[str, Any] = {}
    for name in ("created_at", "updated_at"):
        if name in table.c and name not in keys:
            fixed[name] = func.current_timestamp()
    for name in ("aliases", "attachments"):
        if name in table.c and name not in keys:
            fixed[name] = literal_column("'[]'")
    return insert(table).values(fixed)


def _same(old: Any, new: Any) -> bool:
    if old == new:
        return True
    if isinstance(old, (int, float)) and isinstance(new, (int, float)) and not isinstance(old, bool):
        return float(old) == float(new)
    if isinstance(old, datetime) and isinstance(new, datetime):  # files carry whole seconds
        old = old.astimezone(UTC) if old.tzinfo else old.replace(tzinfo=UTC)
        return old.replace(microsecond=0) == new.astimezone(UTC).replace(microsecond=0)
    return old in (None, "", []) and new in (None, "", [])


async def _only_changes(session: AsyncSession, table: Any, groups: dict[frozenset[str], list[dict[str, Any]]],
                        report: ImportReport, now: datetime | None, stored: dict[int, dict[str, Any]] | None = None,
                        ) -> tuple[dict[frozenset[str], list[dict[str, Any]]], list[tuple[int, dict[str, tuple[Any, Any]]]]]:
    """Rule "re-importing the same file changes nothing": each row aimed at an existing record is compared
    with what is stored; a row that changes nothing counts as already present and is not written (its
    update time stays), a row that does is written with only what changed, and its old and new values go
    to the audit log. Returns the rows to write, regrouped by the columns they change, and the changes.
    The records to write are locked in id order before they are written (services.sql.lock_in_order): two
    jobs updating the same records in different orders queue instead of deadlocking on PostgreSQL; records
    that do not change are not locked (a replayed batch writes nothing and waits for no one)."""
    columns = sorted({k for keys in groups for k in keys} - {"_id", "updated_at"})
    ids = [row["_id"] for rows in groups.values() for row in rows] if stored is None else []
    stored = {} if stored is None else stored
    for start in range(0, len(ids), 1000):
        result = await session.execute(select(table.c.id, *[table.c[c] for c in columns])
                                       .where(table.c.id.in_(ids[start:start + 1000])))
        stored.update({row[0]: dict(zip(columns, row[1:], strict=True)) for row in result.all()})
    changed: dict[frozenset[str], list[dict[str, Any]]] = {}
    changes = []
    for rows in groups.values():
        for row in rows:
            old = stored.get(row["_id"], {})
            diff = {k: (old.get(k), v) for k, v in row.items() if k in old and not _same(old[k], v)}
            if not diff:
                report.unchanged += 1
                continue
            write = {"_id": row["_id"], **{k: row[k] for k in diff}}
            if now is not None:
                write["updated_at"] = now
            changed.setdefault(frozenset(write), []).append(write)
            changes.append((row["_id"], diff))
    await lock_in_order(session, table.c.id, (write["_id"] for rows in changed.values() for write in rows),
                        key_change=any(keys & unique_columns(table) for keys in changed))
    return changed, changes


async def _apply_customers(session: AsyncSession, ctx: Context, batch: list[dict[str, Any]], report: ImportReport) -> set[int]:
    now = utcnow()
    inserts: list[dict[str, Any]] = []
    updates: dict[frozenset[str], list[dict[str, Any]]] = {}
    for values in batch:
        row = {CUSTOMER_COLUMN.get(k, k): v for k, v in values.items()}
        code = row.get("external_id")
        target = ctx.customers_by_code.get(code) if code else None
        if target is None:
            by_name = ctx.customers_by_name.get(row["name"])
            # A name matches only a customer that has no other ERP code.
            if by_name and by_name != -1 and (not code or not ctx.code_of.get(by_name)):
                target = by_name
        if target is None:
            row.setdefault("stage", Stage.interested)
            inserts.append(row)
        else:
            row["_id"] = target
            updates.setdefault(frozenset(row), []).append(row)
    updates, changes = await _only_changes(session, Customer.__table__, updates, report, now)
    await audit.record_changes(session, "customer", changes, user_id=ctx.user_id, actor="import")
    if inserts:
        # In file order (ids follow the file, whatever the hash seed): runs of rows with the same columns.
        for keys, group in itertools.groupby(inserts, key=frozenset):
            await (await session.connection()).execute(_bulk_insert(Customer, keys), list(group))
        report.created += len(inserts)
        # Newly created names and codes count for the rest of the file (duplicates were refused earlier).
        result = await session.execute(
            select(Customer.id, Customer.name, Customer.external_id)
            .where(Customer.name.in_([r["name"] for r in inserts])).where(Customer.archived_at.is_(None))
            .order_by(Customer.id))
        for cid, name, code in result.all():
            ctx.customers_by_name.setdefault(name, cid)
            if code:
                ctx.customers_by_code[code] = cid
            ctx.code_of[cid] = code
    for keys, rows in updates.items():
        columns = {k: bindparam(f"v_{k}") for k in keys if k != "_id"}
        await session.execute(
            update(Customer.__table__).where(Customer.__table__.c.id == bindparam("_id")).values(columns),
            [{"_id": r["_id"], **{f"v_{k}": v for k, v in r.items() if k != "_id"}} for r in rows])
        report.updated += len(rows)
        if "owner_id" in keys:  # a customer given to someone else: the old owner's reminders are closed
            await reminders.close_answered(session, now, customer_ids=[r["_id"] for r in rows])
        for r in rows:
            if r.get("external_id"):
                ctx.customers_by_code[r["external_id"]] = r["_id"]
                ctx.code_of[r["_id"]] = r["external_id"]
    return set()


async def _apply_contacts(session: AsyncSession, ctx: Context, batch: list[dict[str, Any]], report: ImportReport) -> set[int]:
    existing = {
        (cid, name): pid for pid, cid, name in (await session.execute(
            select(ContactPerson.id, ContactPerson.customer_id, ContactPerson.name).order_by(ContactPerson.id.desc())
            .where(ContactPerson.customer_id.in_({v["customer_id"] for v in batch}))
            .where(ContactPerson.archived_at.is_(None)))).all()
    }
    now = utcnow()
    changed_customers: set[int] = set()
    aimed: dict[frozenset[str], list[dict[str, Any]]] = {}
    for values in batch:
        target = existing.get((values["customer_id"], values["name"]))
        birthday = values.get("birthday")
        if birthday is not None:
            values["birthday_mmdd"] = birthday.month * 100 + birthday.day
        if target is None:
            session.add(ContactPerson(**values, created_at=now))
            report.created += 1
            changed_customers.add(values["customer_id"])
        else:
            row = {**values, "_id": target}
            aimed.setdefault(frozenset(row), []).append(row)
    writes, changes = await _only_changes(session, ContactPerson.__table__, aimed, report, None)
    await audit.record_changes(session, "contact", changes, user_id=ctx.user_id, actor="import")
    customer_of = {row["_id"]: row["customer_id"] for rows in aimed.values() for row in rows}
    for rows in writes.values():
        for row in rows:
            target = row.pop("_id")
            await session.execute(update(ContactPerson).where(ContactPerson.id == target).values(**row))
            changed_customers.add(customer_of[target])
            report.updated += 1
    await session.flush()
    # Contact names and phones are searchable: the customer counts as changed (see services.lookup.sync).
    if changed_customers:
        await session.execute(update(Customer).where(Customer.id.in_(changed_customers))
                              .values(updated_at=now).execution_options(synchronize_session=False))
    return set()


async def _apply_purchases(session: AsyncSession, ctx: Context, batch: list[dict[str, Any]], report: ImportReport) -> set[int]:
    rows = []
    for values in batch:
        row = dict(values)
        row["amount_cents"] = row.pop("amount")
        rows.append(row)
    numbered = [r for r in rows if r.get("order_no")]
    by_order: dict[str, tuple[int, int]] = {}
    stored: dict[int, dict[str, Any]] = {}
    if numbered:  # the orders already there, with what the file may change (one query, not two)
        table = Purchase.__table__
        columns = sorted({k for r in numbered for k in r} - {"order_no"})
        result = await session.execute(select(table.c.order_no, table.c.id, *[table.c[c] for c in columns])
                                       .where(among(session, table.c.order_no, [r["order_no"] for r in numbered])))
        for order_no, pid, *values in result.all():
            stored[pid] = dict(zip(columns, values, strict=True))
            by_order[order_no] = (pid, stored[pid]["customer_id"])
    plain = [r for r in rows if not r.get("order_no")]
    known_plain: set[tuple[Any, ...]] = set()
    if plain:
        lo, hi = min(r["purchased_on"] for r in plain), max(r["purchased_on"] for r in plain)
        result = await session.execute(
            select(Purchase.customer_id, Purchase.purchased_on, Purchase.amount_cents, Purchase.products)
            .where(among(session, Purchase.customer_id, sorted({r["customer_id"] for r in plain})))
            .where(Purchase.purchased_on.between(lo, hi), Purchase.order_no.is_(None), Purchase.voided_at.is_(None)))
        known_plain = {tuple(r) for r in result.all()}
    touched: set[int] = set()
    inserts, corrections = [], []
    for row in rows:
        if row.get("order_no") and row["order_no"] in by_order:
            pid, _old_customer = by_order[row["order_no"]]
            corrections.append(row | {"_id": pid})
        elif not row.get("order_no") and (row["customer_id"], row["purchased_on"], row["amount_cents"],
                                          row.get("products")) in known_plain:
            report.unchanged += 1
        else:
            if (new := ctx.added.get(row["customer_id"])) is None:
                new = ctx.added[row["customer_id"]] = rollups.Added()
            new.add(row["purchased_on"], row["amount_cents"])
            # A new order without a payment status is taken as paid; an existing one keeps its status.
            inserts.append({"products": None, "quantity": None, "payment_method": None, "order_no": None,
                            "payment_status": "paid", **row, "source": ctx.channel})
    if inserts:
        statement = _bulk_insert(Purchase, frozenset(inserts[0]))
        if session.get_bind().dialect.name == "postgresql":
            # With RETURNING, SQLAlchemy sends multi-row VALUES (1,000 rows a statement) instead of asyncpg's
            # one execution per row: about a fifth less time for a batch of 5,000 (the ids are not needed).
            statement = statement.returning(Purchase.__table__.c.id)
        await (await session.connection()).execute(statement, inserts)
        report.created += len(inserts)
    grouped: dict[frozenset[str], list[dict[str, Any]]] = {}
    for row in corrections:
        grouped.setdefault(frozenset(row), []).append(row)
    grouped, changes = await _only_changes(session, Purchase.__table__, grouped, report, None, stored)
    await audit.record_changes(session, "purchase", changes, user_id=ctx.user_id, actor="import")
    for pid, diff in changes:  # roll-ups of the customers an order left or joined, or whose order changed
        old_customer, new_customer = diff.get("customer_id", (stored[pid]["customer_id"],) * 2)
        touched.update((old_customer, new_customer))
    for keys, group in grouped.items():
        columns = {k: bindparam(f"v_{k}") for k in keys if k != "_id"}
        await session.execute(
            update(Purchase.__table__).where(Purchase.__table__.c.id == bindparam("_id")).values(columns),
            [{"_id": r["_id"], **{f"v_{k}": v for k, v in r.items() if k != "_id"}} for r in group])
        report.updated += len(group)
    return touched


async def _apply_interactions(session: AsyncSession, ctx: Context, batch: list[dict[str, Any]], report: ImportReport) -> set[int]:
    lo, hi = min(v["occurred_at"] for v in batch), max(v["occurred_at"] for v in batch)
    result = await session.execute(
        select(Interaction.customer_id, Interaction.occurred_at, Interaction.kind)
        .where(Interaction.customer_id.in_({v["customer_id"] for v in batch}))
        .where(Interaction.occurred_at.between(lo, hi)))
    known = {(c, o.replace(microsecond=0), k) for c, o, k in result.all()}
    inserts = []
    for values in batch:
        row = dict(values)
        row["user_id"] = row.pop("user", None)
        if (row["customer_id"], row["occurred_at"].replace(microsecond=0), row["kind"]) in known:
            report.unchanged += 1
            continue
        inserts.append({"summary": None, "outcome": None, "next_step": None, "next_step_on": None,
                        "latitude": None, "longitude": None, "user_id": None, **row})
    if inserts:
        await (await session.connection()).execute(_bulk_insert(Interaction, frozenset(inserts[0])), inserts)
        report.created += len(inserts)
    return {v["customer_id"] for v in batch}


def _feedback_ok(values: dict[str, Any], number: int, layout: Layout, report: ImportReport) -> bool:
    """Rule "time to resolve is measured, never made up": a resolved complaint needs when it was resolved,
    not before it was raised; a resolution time without a status means resolved."""
    resolved_at, created_at = values.get("resolved_at"), values.get("created_at")
    if resolved_at is not None:
        values.setdefault("status", "resolved")
    if values.get("status") == "resolved" and resolved_at is None:
        report.add_error(number, layout.header("resolved_at"), "",
                         Problem(N_("a resolved item needs the time it was resolved")))
        return False
    if resolved_at is not None and created_at is not None and resolved_at < created_at:
        report.add_error(number, layout.header("resolved_at"), resolved_at,
                         Problem(N_("it cannot be resolved before it was raised")))
        return False
    if values.get("status") == "open" and resolved_at is not None:
        report.add_error(number, layout.header("status"), values["status"],
                         Problem(N_("an open item has no resolution time")))
        return False
    return True


async def _apply_feedback(session: AsyncSession, ctx: Context, batch: list[dict[str, Any]], report: ImportReport) -> set[int]:
    """Feedback (complaints with their status, resolution and times) by customer + kind + text + time raised:
    re-importing adds nothing; a changed status or resolution updates the record (audited). Imported
    complaints notify nobody: they are history, not news."""
    now = utcnow()
    result = await session.execute(
        select(Feedback.id, Feedback.customer_id, Feedback.kind, Feedback.text, Feedback.created_at)
        .where(Feedback.customer_id.in_({v["customer_id"] for v in batch})).order_by(Feedback.id))
    existing: dict[tuple[Any, ...], int] = {}
    undated: dict[tuple[Any, ...], int] = {}
    for fid, cid, kind, text, created in result.all():
        existing[(cid, kind, text, created.replace(tzinfo=None, microsecond=0))] = fid
        undated.setdefault((cid, kind, text), fid)
    inserts, aimed = [], {}
    for values in batch:
        row = {"product": None, "rating": None, "status": "open", "resolved_at": None, "resolution": None,
               "user_id": None, "origin_key": None, **values}
        created = row.get("created_at")
        if created is None:
            target = undated.get((row["customer_id"], row["kind"], row["text"]))
        else:
            target = existing.get((row["customer_id"], row["kind"], row["text"],
                                   created.astimezone(UTC).replace(tzinfo=None, microsecond=0)))
        if target is None:
            row["created_at"] = created or now
            inserts.append(row)
        else:
            aimed.setdefault(frozenset(values) | {"_id"}, []).append({**values, "_id": target})
    if inserts:
        await (await session.connection()).execute(insert(Feedback.__table__), inserts)
        report.created += len(inserts)
    writes, changes = await _only_changes(session, Feedback.__table__, aimed, report, None)
    await audit.record_changes(session, "feedback", changes, user_id=ctx.user_id, actor="import")
    for rows in writes.values():
        for row in rows:
            target = row.pop("_id")
            await session.execute(update(Feedback).where(Feedback.id == target).values(**row))
            report.updated += 1
    return set()


APPLY = {
    "customers": _apply_customers,
    "contacts": _apply_contacts,
    "purchases": _apply_purchases,
    "interactions": _apply_interactions,
    "feedback": _apply_feedback,
}


async def _refresh_rollups(session: AsyncSession, touched: set[int], added: dict[int, rollups.Added]) -> None:
    """Roll-ups of the customers whose purchases were only added are brought forward from the new rows
    (rollups.add_purchases); those whose purchases were corrected or moved are recomputed (refresh). All
    of them are locked first, in one id order (two sweeps, one per kind, could each wait on the other's
    rows held by another job)."""
    await lock_in_order(session, Customer.id, set(added) | touched)
    await rollups.add_purchases(session, {cid: new for cid, new in added.items() if cid not in touched})
    if not touched:
        return
    await rollups.refresh(session, touched)
    for ids in value_chunks(session, sorted(touched)):
        await session.execute(
            update(Customer).where(among(session, Customer.id, ids))
            .where(Customer.txn_count > 0, Customer.stage != Stage.customer)
            .values(stage=Stage.customer).execution_options(synchronize_session=False))


async def import_file(session: AsyncSession, kind: str, path: str | Path, *, timezone: str = "Asia/Shanghai",
                      user_id: int | None = None, progress: Progress | None = None,
                      today: date | None = None, dry_run: bool = False, encoding: str | None = None,
                      sheet: str | None = None, date_order: str | None = None) -> ImportReport:
    """Validate the whole file; if it is clean (and not a dry run), apply it in the session's transaction.

    The caller commits. On a report with errors nothing has been written."""
    _check_kind(kind)
    known = header_map(FIELDS_BY_KIND[kind])
    table = open_table(path, encoding=encoding, sheet=sheet, known=lambda header: header_key(header) in known)
    return await _import_table(session, kind, table, timezone=timezone, user_id=user_id, progress=progress,
                               today=today, dry_run=dry_run, date_order=date_order, actor="import",
                               source={"file": Path(path).name})


MAX_RECORDS = 5000  # records per call of import_records (the ERP API's batch limit)


async def import_records(session: AsyncSession, kind: str, records: list[dict[str, Any]], *, source: dict[str, Any],
                         timezone: str = "Asia/Shanghai", today: date | None = None,
                         dry_run: bool = False) -> ImportReport:
    """Rule "a program's records are a file without the guessing": the same validation, value parsing,
    matching (external id / 订单号 / name) and idempotent upsert as `import_file`, for records a program sent
    (the ERP API) — keyed by the English field names or the Chinese headers. A key that names no field is
    an error (a typo must not drop data silently); rows are numbered from 1 in the order sent; no totals
    row is guessed. All or nothing: with any error, nothing is written. Audited with `source` (e.g. the
    API token's name) as a CLI import is with its file name. The caller commits."""
    _check_kind(kind)
    if len(records) > MAX_RECORDS:
        raise FileProblem(N_("send at most {limit} records at a time"), limit=MAX_RECORDS)
    known = header_map(FIELDS_BY_KIND[kind])
    headers = list(dict.fromkeys(key for record in records for key in record))
    unknown = [key for key in headers if header_key(key) not in known]
    if unknown:
        report = ImportReport(kind, rows=len(records))
        for key in unknown:
            row = next(n for n, record in enumerate(records, start=1) if key in record)
            report.add_error(row, key, "", Problem(N_("no such field; the fields are: {fields}"),
                                                   {"fields": ", ".join(s.name for s in FIELDS_BY_KIND[kind]
                                                                        if not s.export_only)}))
        return report

    def cell(value: Any) -> Any:
        if isinstance(value, list):  # a JSON list (aliases): the list separator files use
            return "; ".join(str(part) for part in value)
        if isinstance(value, bool):  # JSON true/false: as a file would say it
            return "yes" if value else "no"
        return value

    rows = ((number, [cell(record.get(key)) for key in headers]) for number, record in enumerate(records, start=1))
    table = Table(headers, rows, len(records), records=True)
    return await _import_table(session, kind, table, timezone=timezone, user_id=None, progress=None, today=today,
                               dry_run=dry_run, date_order=None, actor="api", source=source,
                               wanted=_named_customers(kind, records, known))


def _named_customers(kind: str, records: list[dict[str, Any]], known: dict[str, FieldSpec]) -> tuple[set[str], set[str]]:
    """The customer codes and names these records name, read as the import reads them: what a batch needs
    of the customers table (a batch of 5,000 need not load 100,000 customers)."""
    code_field, name_field = ("external_id", "name") if kind == "customers" else ("customer_external_id",
                                                                                  "customer_name")
    codes: set[str] = set()
    names: set[str] = set()
    wanted = {key: spec for key in {key for record in records for key in record}
              if (spec := known.get(header_key(key))) is not None and spec.name in (code_field, name_field)}
    for key, spec in wanted.items():
        found = codes if spec.name == code_field else names
        for record in records:
            value = record.get(key)
            if value is None or value == "":
                continue
            try:
                found.add(parse_value(spec, value, tz=UTC))
            except DomainError:
                continue  # refused when the row is read
    return codes, names


def _check_kind(kind: str) -> None:
    if kind not in FIELDS_BY_KIND:
        raise FileProblem(N_("cannot import “{kind}”; choose one of: {choices}"), kind=kind, choices=", ".join(KINDS))


async def _import_table(session: AsyncSession, kind: str, table: Table, *, timezone: str, user_id: int | None,
                        progress: Progress | None, today: date | None, dry_run: bool, date_order: str | None,
                        actor: str, source: dict[str, Any],
                        wanted: tuple[set[str], set[str]] | None = None) -> ImportReport:
    """The one import: check every row, then (all clean, not a dry run) apply them in the caller's
    transaction, refresh the roll-ups and audit it."""
    fields = FIELDS_BY_KIND[kind]
    tz = ZoneInfo(timezone)
    today = today or today_in(timezone)  # "today" where the data was made, not in UTC
    if date_order is not None and date_order not in DATE_ORDERS:
        raise FileProblem(N_("--date-order must be one of: {choices}"), choices=", ".join(DATE_ORDERS))
    ctx = await _load_context(session, kind, tz, today, wanted)
    ctx.date_order, ctx.user_id, ctx.channel = date_order, user_id, "api" if actor == "api" else "import"

    report = ImportReport(kind)
    report.encoding, report.sheet = table.encoding, table.sheet
    layout = _layout(table, _map_headers(table, fields, report))
    # Pass 1 checks every row and spools the parsed rows to a temporary file (bounded memory, one parse).
    with tempfile.TemporaryFile() as spool:
        for batch in _batches(_rows(ctx, layout, report, progress, "checking")):
            if report.ok:
                pickle.dump(batch, spool, protocol=pickle.HIGHEST_PROTOCOL)
        if not report.ok or dry_run:
            return report
        # Pass 2 applies the spooled rows in the caller's transaction.
        applied = ImportReport(kind, rows=report.rows, ignored_columns=report.ignored_columns,
                               encoding=report.encoding, sheet=report.sheet, summary_rows=report.summary_rows)
        touched: set[int] = set()
        spool.seek(0)
        done = 0
        while True:
            try:
                batch = pickle.load(spool)
            except EOFError:
                break
            if ctx.resolved:
                _resolve_dates(ctx, batch)
            touched |= await APPLY[kind](session, ctx, batch, applied)
            done += len(batch)
            if progress:
                progress("importing", done, report.rows)
    await session.flush()
    await _refresh_rollups(session, touched, ctx.added)
    audit.record(session, action="import", entity=kind, entity_id=None, user_id=user_id, actor=actor,
                 changes={**source, "rows": applied.rows, "created": applied.created,
                          "updated": applied.updated, "unchanged": applied.unchanged})
    applied.applied = True
    return applied
