"""Exporting records to CSV or XLSX.

Rules: headers are the Chinese labels (zh_Hans / zh_Hant) or the English field names, and dictionary
values the labels in the same language, so an exported file imports back unchanged. Archived customers
are left out unless asked for. Rows are streamed from the database, never all held in memory.
CSV is written as UTF-8 with BOM (Excel opens it with Chinese intact); amounts are plain decimals.
"""

from __future__ import annotations

import csv
import json
from collections.abc import AsyncIterator
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from models import (
    AuditLog,
    ContactPerson,
    ContactStrategy,
    Customer,
    DictionaryEntry,
    Feedback,
    Interaction,
    Purchase,
    PurchaseStrategy,
    User,
)
from services.fields import ENUM_WORDS, FIELDS_BY_KIND, FieldSpec
from services.messages import N_, DomainError
from services.safecells import as_text_cells, defuse_csv

AUDIT_FIELDS = (
    FieldSpec("at", "时间", "時間", "datetime"),
    FieldSpec("user", "操作人", "操作人", "user"),
    FieldSpec("actor", "来源", "來源", "text"),
    FieldSpec("action", "操作", "操作", "text"),
    FieldSpec("entity", "对象", "對象", "text"),
    FieldSpec("entity_id", "对象编号", "對象編號", "int"),
    FieldSpec("changes", "变更内容", "變更內容", "text"),
)
EXPORT_FIELDS = {**FIELDS_BY_KIND, "audit": AUDIT_FIELDS}
EXPORT_KINDS = tuple(EXPORT_FIELDS)


def _header(spec: FieldSpec, language: str) -> str:
    return {"zh_Hans": spec.zh, "zh_Hant": spec.zh_hant}.get(language, spec.name)


async def _labels(session: AsyncSession, language: str) -> dict[str, dict[int, str]]:
    labels: dict[str, dict[int, str]] = {"dict": {}, "contact_strategy": {}, "purchase_strategy": {}, "user": {}}
    for entry in (await session.execute(select(DictionaryEntry))).scalars():
        labels["dict"][entry.id] = entry.label(language)
    for kind, model in (("contact_strategy", ContactStrategy), ("purchase_strategy", PurchaseStrategy)):
        for strategy in (await session.execute(select(model))).scalars():
            labels[kind][strategy.id] = strategy.label(language)
    for user_id, name in (await session.execute(select(User.id, User.name))).all():
        labels["user"][user_id] = name
    return labels


def _enum_label(ref: str, code: str | None, language: str) -> str | None:
    if code is None:
        return None
    words = ENUM_WORDS[ref].get(code)
    if not words:
        return code
    return {"zh_Hans": words[0], "zh_Hant": words[1]}.get(language, code)


async def _records(session: AsyncSession, kind: str, language: str, tz: ZoneInfo,
                   include_archived: bool) -> AsyncIterator[list[Any]]:
    labels = await _labels(session, language)
    fields = EXPORT_FIELDS[kind]
    local = lambda moment: moment.astimezone(tz).replace(tzinfo=None) if moment else None  # noqa: E731

    def cell(spec: FieldSpec, value: Any) -> Any:
        if value is None:
            return None
        if spec.type == "dict":
            return labels["dict"].get(value)
        if spec.type == "strategy":
            return labels[spec.ref or ""].get(value)
        if spec.type in ("owner", "user"):
            return labels["user"].get(value)
        if spec.type == "enum":
            return _enum_label(spec.ref or "", value, language)
        if spec.type == "amount":
            return value / 100
        if spec.type == "list":
            return "、".join(value)
        if spec.type == "datetime":
            return local(value)
        return value

    if kind == "customers":
        query = select(Customer)
        if not include_archived:
            query = query.where(Customer.archived_at.is_(None))
        async for customer in await session.stream_scalars(query.order_by(Customer.id).execution_options(yield_per=2000)):
            row = []
            for spec in fields:
                attr = {"txn_amount": "txn_amount_cents", "owner": "owner_id"}.get(spec.name, spec.name)
                if spec.type in ("dict", "strategy"):
                    attr = f"{spec.name}_id"
                row.append(cell(spec, getattr(customer, attr)))
            yield row
        return
    if kind == "audit":  # every change, oldest first (the changes as JSON text)
        async for entry in await session.stream_scalars(select(AuditLog).order_by(AuditLog.id)
                                                        .execution_options(yield_per=2000)):
            yield [cell(spec, json.dumps(entry.changes, ensure_ascii=False) if spec.name == "changes"
                        else getattr(entry, "user_id" if spec.name == "user" else spec.name)) for spec in fields]
        return
    model = {"contacts": ContactPerson, "purchases": Purchase, "interactions": Interaction, "feedback": Feedback}[kind]
    query = (select(model, Customer.external_id, Customer.name).join(Customer, Customer.id == model.customer_id)
             .order_by(model.id))
    if not include_archived:
        query = query.where(Customer.archived_at.is_(None))
    if kind == "purchases":
        query = query.where(Purchase.voided_at.is_(None))
    if kind == "contacts":
        query = query.where(ContactPerson.archived_at.is_(None))
    async for record, code, name in await session.stream(query.execution_options(yield_per=2000)):
        row = []
        for spec in fields:
            if spec.name == "customer_external_id":
                row.append(code)
            elif spec.name == "customer_name":
                row.append(name)
            else:
                attr = {"amount": "amount_cents", "user": "user_id"}.get(spec.name, spec.name)
                row.append(cell(spec, getattr(record, attr)))
        yield row


async def export(session: AsyncSession, kind: str, path: str | Path, *, fmt: str = "csv", language: str = "zh_Hans",
                 timezone: str = "Asia/Shanghai", include_archived: bool = False) -> int:
    """Write `kind` to `path` as csv or xlsx; returns the number of rows written."""
    if kind not in EXPORT_FIELDS:
        raise DomainError(N_("cannot export “{kind}”; choose one of: {choices}"), kind=kind, choices=", ".join(EXPORT_KINDS))
    if fmt not in ("csv", "xlsx"):
        raise DomainError(N_("the format must be csv or xlsx"))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    headers = [_header(spec, language) for spec in EXPORT_FIELDS[kind]]
    tz = ZoneInfo(timezone)
    count = 0
    if fmt == "csv":
        with path.open("w", encoding="utf-8-sig", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(headers)
            async for row in _records(session, kind, language, tz, include_archived):
                writer.writerow(["" if v is None else _csv_value(v, spec) for v, spec in zip(row, EXPORT_FIELDS[kind])])
                count += 1
        return count
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Font

    book = Workbook(write_only=True)
    sheet = book.create_sheet(kind)
    bold = Font(bold=True)
    head_cells = []
    for text in headers:
        c = WriteOnlyCell(sheet, value=text)
        c.font = bold
        head_cells.append(c)
    sheet.append(head_cells)
    formats = [_number_format(spec) for spec in EXPORT_FIELDS[kind]]
    async for row in _records(session, kind, language, tz, include_archived):
        out = []
        for value, number_format in zip(row, formats):
            c = WriteOnlyCell(sheet, value=value)
            if number_format and value is not None:
                c.number_format = number_format
            out.append(c)
        as_text_cells(out)  # a name typed as =HYPERLINK(…) stays text (services.safecells)
        sheet.append(out)
        count += 1
    book.save(path)
    return count


def _number_format(spec: FieldSpec) -> str | None:
    return {"amount": "#,##0.00", "date": "yyyy-mm-dd", "datetime": "yyyy-mm-dd hh:mm"}.get(spec.type)


def _csv_value(value: Any, spec: FieldSpec) -> Any:
    plain = _plain(value, spec)
    return defuse_csv(plain) if isinstance(plain, str) and spec.type != "amount" else plain


def _plain(value: Any, spec: FieldSpec) -> Any:
    if spec.type == "amount":
        return f"{value:.2f}"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, bool):
        return "是" if value else "否"
    return value
