"""Alembic environment: targets the SQLModel metadata; the URL comes from FieldCRM's settings.

When the app (or a test) passes an open connection in `config.attributes["connection"]`, migrations
run on it; otherwise (the `alembic` command line) an async engine is made from the settings.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

import models  # noqa: F401  registers every table
from models.common import metadata

config = context.config


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_async() -> None:
    from bot.db import make_engine
    from bot.settings import get_settings

    engine = make_engine(get_settings().effective_database_url)
    async with engine.begin() as conn:
        await conn.run_sync(_run)
    await engine.dispose()


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
elif context.is_offline_mode():
    raise SystemExit("Offline (SQL script) migrations are not supported; run `python main.py migrate`.")
else:
    asyncio.run(_run_async())
