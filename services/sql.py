"""Helpers for the few queries that read hundreds of thousands of rows (reminder scan, reports)."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession


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


@contextmanager
def collector_paused() -> Iterator[None]:
    """Python's cycle collector paused while (acyclic) rows and results are made by the hundred thousand:
    otherwise it walks the growing lists again and again. Reference counting still frees everything."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
