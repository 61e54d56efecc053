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


def _refuse_downgrade_over_data(connection: Connection) -> None:
    """`alembic downgrade` over data stops with one line (bot.db.data_a_downgrade_would_lose), unless run
    with `-x force=yes` after a backup."""
    command = getattr(config.cmd_opts, "cmd", None)
    if not command or getattr(command[0], "__name__", "") != "downgrade":
        return
    if context.get_x_argument(as_dictionary=True).get("force") == "yes":
        return
    from bot.db import data_a_downgrade_would_lose

    refusal = data_a_downgrade_would_lose(connection)
    if refusal:
        raise SystemExit(refusal)


def _run(connection: Connection) -> None:
    _refuse_downgrade_over_data(connection)
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
