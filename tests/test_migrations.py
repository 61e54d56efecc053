"""The Alembic migrations build exactly the schema the models describe, and seed the dictionaries."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import func, select, text

import models
from bot.db import schema_status, upgrade
from models import ContactStrategy, DictionaryEntry, DictionaryKind, PurchaseStrategy


async def test_migrations_produce_exactly_the_models_schema(engine):
    def diff(connection):
        return compare_metadata(MigrationContext.configure(connection, opts={"compare_type": True}), models.metadata)

    async with engine.connect() as conn:
        differences = await conn.run_sync(diff)
    assert differences == []


async def test_database_is_at_the_newest_revision_and_upgrading_again_is_harmless(engine):
    await upgrade(engine)  # already at head: a no-op, not an error
    current, head = await schema_status(engine)
    assert current == head is not None


async def test_every_dictionary_is_seeded_with_labels_in_three_languages(session):
    for kind in DictionaryKind:
        entries = (await session.execute(select(DictionaryEntry).where(DictionaryEntry.kind == kind))).scalars().all()
        assert len(entries) >= 4, kind
        for entry in entries:
            assert entry.label_zh_hans and entry.label_zh_hant and entry.label_en
    regions = {e.label_zh_hans for e in (await session.execute(
        select(DictionaryEntry).where(DictionaryEntry.kind == "region"))).scalars()}
    assert {"华南", "华东", "华中", "华北", "西南", "西北", "东北"} <= regions
    assert await session.scalar(select(func.count(ContactStrategy.id))) >= 3
    assert await session.scalar(select(func.count(PurchaseStrategy.id))) >= 3


async def test_sqlite_runs_with_wal_and_foreign_keys(engine):
    if engine.dialect.name != "sqlite":
        return
    async with engine.connect() as conn:
        assert (await conn.execute(text("PRAGMA journal_mode"))).scalar() == "wal"
        assert (await conn.execute(text("PRAGMA foreign_keys"))).scalar() == 1
