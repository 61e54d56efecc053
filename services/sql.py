"""Helpers for the few queries that read hundreds of thousands of rows (reminder scan, reports)."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession


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
