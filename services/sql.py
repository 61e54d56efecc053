"""Helpers for the few queries that read hundreds of thousands of rows (reminder scan, reports)."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
from sqlalchemy import String, UniqueConstraint, any_, bindparam, cast, func, literal, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.types import ARRAY

IN_LIST = 500  # values per IN (...) list where a statement cannot take them as one array (SQLite)


def value_chunks(session: AsyncSession, values: Any, size: int = IN_LIST) -> Iterator[list[Any]]:
    """`values` in the parts a statement filters on with `among`: all at once on PostgreSQL (one array,
    one round trip), in lists of `size` elsewhere (SQLite limits the parameters of a statement)."""
    values = list(values)
    step = (len(values) or 1) if session.get_bind().dialect.name == "postgresql" else size
    for start in range(0, len(values), step):
        yield values[start:start + step]


def among(session: AsyncSession, column: Any, values: list[Any]) -> Any:
    """`column IN values`, on PostgreSQL as `column = ANY(:array)`: one parameter whatever the number of
    values, so neither SQLAlchemy nor the server compiles and plans a statement with thousands of them."""
    if session.get_bind().dialect.name == "postgresql":
        return column == any_(bindparam(None, list(values), type_=ARRAY(column.type)))
    return column.in_(values)


async def lock_in_order(session: AsyncSession, column: Any, ids: Any, *, key_change: bool = False) -> None:
    """Rule "rows locked in one order": rows a transaction is about to update, locked first in id order, so
    two transactions updating the same rows in different orders — two ERP jobs, one exporting backwards —
    queue instead of each holding a row the other needs until PostgreSQL aborts one (what is left of that,
    across the parts of one big request, the API tries again: bot.api). The lock is FOR NO KEY UPDATE, which
    transactions that inserted rows referring to these (an order for a customer) do not conflict with;
    `key_change`: the update changes a unique column (a customer's ERP code), which needs FOR UPDATE — taken
    here at once rather than upgraded later. SQLite has one writer at a time: nothing to do there."""
    ids = sorted(set(ids))
    if not ids or session.get_bind().dialect.name != "postgresql":
        return
    await session.execute(select(column).where(among(session, column, ids)).order_by(column)
                          .with_for_update(key_share=not key_change))


def unique_columns(table: Any) -> frozenset[str]:
    """The columns of `table` in a unique constraint or index (updating one is a key change to PostgreSQL)."""
    names = {c.name for c in table.columns if c.unique or c.primary_key}
    for constraint in table.constraints:
        if isinstance(constraint, UniqueConstraint):
            names.update(c.name for c in constraint.columns)
    for index in table.indexes:
        if index.unique:
            names.update(getattr(c, "name", "") for c in index.columns)
    return frozenset(names)


async def replayed(session: AsyncSession, model: Any, origin_key: str | None) -> Any:
    """Rule "one input, one record": the row an input (`origin_key`, see models.activity.ORIGIN) already
    created, or None. A double tap or a redelivered update then returns that row instead of adding a second."""
    if origin_key is None:
        return None
    from sqlalchemy import select

    return await session.scalar(select(model).where(model.origin_key == origin_key))


async def raw_rows(session: AsyncSession, query: Any) -> list[Any]:
    """Rows of a column query as the driver returns them: no ORM and no per-row type processing (so the
    query should select ids, numbers and text; dates and times come back as ISO text on SQLite)."""
    result = await (await session.connection()).execute(query)
    try:
        return result.cursor.fetchall()
    finally:
        result.close()


_TEXT_SEPARATOR, _PRESENT = "\x1f", "\x1e"  # unit separator between texts; record separator before a non-null text


async def columns(session: AsyncSession, query: Any, *, text: tuple[int, ...] = ()) -> list[Any]:
    """The result of a column query as columns: a numpy int64 array per integer column (NULL read as -1),
    a list of str | None per column whose index is in `text`. For a million rows this is several times
    faster than rows: the database joins each column into one string (SQLite group_concat, PostgreSQL
    string_agg, fed the rows in one order) and numpy parses the numbers, instead of a Python tuple per row.
    The query must have at least one integer column; a text containing the separator is read as rows."""
    dialect = session.get_bind().dialect.name
    sub = query.subquery()
    names = list(sub.c)
    if dialect not in ("sqlite", "postgresql"):
        return _from_rows(await raw_rows(session, select(*names)), len(names), text)

    def joined(column: Any, separator: str) -> Any:
        if dialect == "sqlite":
            return func.group_concat(column, separator)
        return func.string_agg(cast(column, String), separator)
    parts = [joined(func.coalesce(literal(_PRESENT) + cast(c, String), ""), _TEXT_SEPARATOR) if i in text
             else joined(func.coalesce(c, -1), ",") for i, c in enumerate(names)]
    [row] = await raw_rows(session, select(*parts).select_from(sub))
    out: list[Any] = [None if i in text else np.fromstring(joined_text, dtype=np.int64, sep=",") if joined_text
                      else np.zeros(0, dtype=np.int64) for i, joined_text in enumerate(row)]
    size = next(column.size for column in out if column is not None)
    for i in text:
        values = row[i].split(_TEXT_SEPARATOR) if size else []
        if len(values) != size:  # a text holds the separator
            return _from_rows(await raw_rows(session, select(*names)), len(names), text)
        out[i] = [v[1:] if v else None for v in values]
    return out


def _from_rows(rows: list[Any], width: int, text: tuple[int, ...]) -> list[Any]:
    out: list[Any] = []
    for i in range(width):
        if i in text:
            out.append([row[i] for row in rows])
        else:
            out.append(np.fromiter((-1 if row[i] is None else row[i] for row in rows), dtype=np.int64,
                                   count=len(rows)))
    return out


_PAUSE_LOCK = threading.Lock()
_pauses = 0  # pauses under way in this process (any thread)
_restore = False  # whether the collector was on when the first of them began


@contextmanager
def collector_paused() -> Iterator[None]:
    """Python's cycle collector paused while (acyclic) rows and results are made by the hundred thousand:
    otherwise it walks the growing lists again and again. Reference counting still frees everything.

    The collector is one per process, and pauses overlap: the lookup build's thread pauses it while the
    bot's loop pauses it to read an edited customer. So pauses are counted: the first one switches it off,
    the last one to end switches it back on if it was on before the first. (Each pause on its own used to
    read "is it on?" and switch it off in two steps: a pause that ended in between left it off for the
    rest of the process's life — 17 times in 200 in a review's two-thread test — and one that ended
    early switched it back on under the other.)"""
    global _pauses, _restore
    with _PAUSE_LOCK:
        if _pauses == 0:
            _restore = gc.isenabled()
            gc.disable()
        _pauses += 1
    try:
        yield
    finally:
        with _PAUSE_LOCK:
            _pauses -= 1
            if _pauses == 0 and _restore:
                gc.enable()
