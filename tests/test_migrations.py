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


def _alembic(db_url: str, tmp_path, *args: str):
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "DATABASE_URL": db_url, "DATA_DIR": str(tmp_path / "data"), "DEFAULT_LANGUAGE": "en"}
    env.pop("BOT_TOKEN", None)
    return subprocess.run([sys.executable, "-m", "alembic", "-c", str(root / "alembic.ini"), *args], env=env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)


async def test_a_downgrade_over_data_refuses_with_one_clear_line_and_keeps_everything(db_url, engine, tmp_path):
    from services.customers import create_customer

    async with engine.begin() as conn:
        await conn.execute(text("SELECT 1"))
    from bot.db import make_sessionmaker

    async with make_sessionmaker(engine)() as session:
        await create_customer(session, name="广州市人易软件技术有限公司")
        await session.commit()
    await engine.dispose()
    refused = _alembic(db_url, tmp_path, "downgrade", "base")
    assert refused.returncode != 0
    last = refused.stderr.strip().splitlines()[-1]
    assert last.startswith("Refusing to downgrade: it would delete data (") and "customer 1" in last
    assert "python3 main.py backup" in last and "-x force=yes" in last
    async with make_sessionmaker(engine)() as session:
        assert await session.scalar(select(func.count()).select_from(models.Customer)) == 1
    current, head = await schema_status(engine)
    assert current == head  # nothing was undone


async def test_a_downgrade_of_an_empty_database_works(db_url, tmp_path):
    done = _alembic(db_url, tmp_path, "downgrade", "base")
    assert done.returncode == 0, done.stderr[-2000:]
