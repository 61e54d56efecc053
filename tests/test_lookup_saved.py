"""The whole lookup index is there as soon as the bot starts: the index a build made is saved, and the next
start opens it and reads again only the customers changed since (issue 18: at 1M customers the whole index
took 79 s to build on every start, fuzzy lookups answering "still loading" meanwhile)."""

from __future__ import annotations

import os

import pytest
from sqlalchemy import update

from models import Customer, utcnow
from services import lookup
from services.access import Viewer
from services.contacts import add_contact, archive_contact, update_contact
from services.customers import archive_customer, create_customer, update_customer
from services.lookup import build_index, open_saved, save_index, sync
from tests.test_lookup import small_book

EVERYONE = Viewer.everyone()
QUERIES = ("人易", "renyi", "hdwl", "1234", "acme trdng", "zengzhiwei", "廣州人易軟件", "金盛", "jinsheng", "86661234",
           "恒远物流", "恒达物流", "人艺文化", "诸葛明亮", "13712345678", "长江物流", "华信")


def answers(index, query):
    return [(m.customer_id, m.score, m.why, m.name) for m in index.search(query, EVERYONE, 5)]


@pytest.fixture
def reread(monkeypatch):
    """The customers whose documents are read again (by id), in the order asked."""
    asked: list[int] = []
    real = lookup.load_documents

    async def counting(session, customer_ids=None):
        ids = None if customer_ids is None else list(customer_ids)
        asked.extend(ids if ids is not None else [-1])  # -1: everyone (a build)
        return await real(session, ids)

    monkeypatch.setattr(lookup, "load_documents", counting)
    return asked


async def test_a_contact_changed_in_the_bot_moves_its_customer_so_other_instances_find_it(session):
    """Rule "a contact's change is its customer's change": another instance (no Redis) and a saved index
    learn of it only from the customer's updated_at."""
    ids = await small_book(session)
    other = await build_index(session)  # another process's index
    await sync(other, session)
    huaxin = ids["华信电子"]
    person = await add_contact(session, EVERYONE, huaxin, name="诸葛明亮", mobile="13712345678")
    await session.commit()
    assert await sync(other, session) == 1
    assert answers(other, "诸葛明亮")[0][0] == huaxin and answers(other, "13712345678")[0][0] == huaxin
    await update_contact(session, EVERYONE, person.id, name="司马光明")
    await session.commit()
    assert await sync(other, session) == 1
    assert answers(other, "司马光明")[0][0] == huaxin
    await archive_contact(session, EVERYONE, person.id)
    await session.commit()
    assert await sync(other, session) == 1
    assert huaxin not in [m[0] for m in answers(other, "13712345678")]


async def test_a_saved_index_opens_with_the_changes_made_while_the_bot_was_stopped(session, tmp_path, reread):
    ids = await small_book(session)
    path = tmp_path / "lookup.index"
    save_index(await build_index(session, to_save=True), path, database="one")
    assert path.exists()
    # While the bot is stopped: a customer added (an import elsewhere), one renamed, one archived, a contact
    # added in another instance, one moved to a rep.
    added = await create_customer(session, name="南京金盛贸易有限公司", short_name="金盛贸易", phone="025-86661234")
    await update_customer(session, ids["恒达物流"], name="上海恒远物流股份有限公司", short_name="恒远物流")
    await archive_customer(session, ids["人艺文化"])
    await add_contact(session, EVERYONE, ids["华信电子"], name="诸葛明亮", mobile="13712345678")
    await session.commit()
    reread.clear()
    index = await open_saved(session, path, database="one")
    assert index is not None and not index.loading
    # Only the changed customers were read again, not the whole book.
    assert sorted(reread) == sorted([added.id, ids["恒达物流"], ids["人艺文化"], ids["华信电子"]])
    built = await build_index(session)
    for query in QUERIES:
        assert answers(index, query) == answers(built, query), query
    assert answers(index, "金盛")[0][0] == added.id and ids["人艺文化"] not in [m[0] for m in answers(index, "人艺文化")]
    assert len(index) == len(built)
    # And it goes on as any index: a later change is picked up by sync.
    later = await create_customer(session, name="苏州天金医疗器械有限公司")
    await session.commit()
    assert await sync(index, session) == 1 and answers(index, "天金医疗")[0][0] == later.id


async def test_a_saved_index_is_not_used_for_another_database_other_code_a_damaged_file_or_many_changes(
        session, tmp_path, monkeypatch, caplog):
    ids = await small_book(session)
    path = tmp_path / "lookup.index"
    assert await open_saved(session, path, database="one") is None  # none saved yet
    save_index(await build_index(session, to_save=True), path, database="one")
    assert await open_saved(session, path, database="two") is None  # another database's
    monkeypatch.setattr(lookup, "_SAVED_CODE", "other code")
    assert await open_saved(session, path, database="one") is None  # made by other code (an update)
    monkeypatch.undo()
    assert await open_saved(session, path, database="one") is not None
    # More customers changed since it was saved than reading them again is worth: built instead.
    await session.execute(update(Customer).where(Customer.id.in_(list(ids.values())[:4])).values(
        updated_at=utcnow()))
    await session.commit()
    monkeypatch.setattr(lookup, "SAVED_STALE_MIN", 0)
    monkeypatch.setattr(lookup, "SAVED_STALE_SHARE", 0.5)
    assert await open_saved(session, path, database="one") is None
    monkeypatch.setattr(lookup, "SAVED_STALE_SHARE", 0.6)
    assert await open_saved(session, path, database="one") is not None
    # A damaged or cut-off file (a crash while another process wrote it, a full disk) is never trusted.
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])
    caplog.clear()
    assert await open_saved(session, path, database="one") is None
    assert "cannot be read" in caplog.text
    path.write_bytes(b"not an index at all")
    assert await open_saved(session, path, database="one") is None
    # Restored from an older backup: every customer that differs from the saved one is read again.
    killed = tmp_path / "lookup.index.4242.partial"  # a process killed while it saved, long ago
    killed.write_bytes(b"half an index")
    os.utime(killed, (0, 0))
    save_index(await build_index(session, to_save=True), path, database="one")
    assert not killed.exists() and [p.name for p in tmp_path.iterdir() if p.name.startswith("lookup")] == ["lookup.index"]
    await session.execute(update(Customer).where(Customer.id == ids["人易软件"]).values(
        name="广州市人易网络科技有限公司", updated_at=utcnow().replace(year=2020)))
    await session.commit()
    index = await open_saved(session, path, database="one")
    assert answers(index, "人易网络")[0][0] == ids["人易软件"]
    assert answers(index, "人易网络") == answers(await build_index(session), "人易网络")


async def test_the_second_start_has_the_whole_index_at_once(engine, tmp_path, monkeypatch):
    """bot.runner.open_index: the first start answers exact names while it builds, and saves the build; the
    next start opens that one, up to date, and answers any query from its first update."""
    from bot.db import make_sessionmaker
    from bot.runner import open_index
    from services.lookup import SavedIndex

    sessions = make_sessionmaker(engine)
    async with sessions() as session:
        ids = await small_book(session)
    saved = SavedIndex(tmp_path / "data" / "lookup" / "index-test.bin", "test")
    first, building = await open_index(sessions, wait_below=0, saved=saved)
    assert first.loading and first.search("人易", EVERYONE) == []  # building: exact names only
    await building
    assert not first.loading and saved.path.exists() and first.stamps is None
    async with sessions() as session:  # while it is stopped
        added = await create_customer(session, name="南京金盛贸易有限公司", phone="025-86661234")
        await session.commit()
    built: list = []
    monkeypatch.setattr(lookup, "_build", lambda *a, **k: built.append(a))  # a second start builds nothing
    second, building = await open_index(sessions, wait_below=0, saved=saved)
    await building
    assert not second.loading and built == []
    assert answers(second, "人易")[0][0] == ids["人易软件"] and answers(second, "jinsheng")[0][0] == added.id
    assert second.behind == 1
    monkeypatch.undo()
    # Many changes since (an import while it was stopped): opened, and saved anew beside the running bot,
    # so the start after it reads none of them again.
    import bot.runner as runner

    monkeypatch.setattr(runner, "SAVE_ANEW_AFTER", 0)
    third, building = await open_index(sessions, wait_below=0, saved=saved)
    assert not third.loading and third.behind == 1
    await building
    async with sessions() as session:
        assert (await open_saved(session, saved.path, database="test")).behind == 0
    # A folder it cannot write to costs only the next start a build, never this one.
    blocked = tmp_path / "not a folder"
    blocked.write_text("")
    index, building = await open_index(sessions, wait_below=0, saved=SavedIndex(blocked / "index.bin", "test"))
    await building
    assert not index.loading and answers(index, "人易")[0][0] == ids["人易软件"]


async def test_a_stop_during_the_first_build_ends_it_within_a_chunk_and_saves_nothing(engine, tmp_path, monkeypatch):
    """Ctrl+C while the first start builds the index: the build's thread stops between two chunks. A thread
    cannot be cancelled and the interpreter waits for it at exit, so a stop during the first start at 1M
    customers used to wait for the whole build — over a minute (100k customers: 5.4 s from SIGINT to exit,
    1.7 s now). Nothing half-made is saved: the next start builds again."""
    import asyncio
    import contextlib
    import time

    from bot.background import in_memory
    from bot.db import make_sessionmaker
    from services.lookup import SavedIndex

    assert not in_memory(engine)  # the build runs in a thread of its own, as in the product
    sessions = make_sessionmaker(engine)
    async with sessions() as session:
        ids = await small_book(session)
    real_prepare = lookup._prepare_chunk
    prepared: list[int] = []

    def slow_prepare(job):  # a customer per chunk, half a second each: the build takes 3.5 s
        time.sleep(0.5)
        prepared.append(job[0])
        return real_prepare(job)

    monkeypatch.setattr(lookup, "_prepare_chunk", slow_prepare)
    ended = build_thread_watched(monkeypatch)
    saved = SavedIndex(tmp_path / "lookup" / "index-test.bin", "test")
    index, building = await open_index_of(sessions, saved)
    while len(prepared) < 2:
        await asyncio.sleep(0.02)
    building.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await building
    assert await asyncio.to_thread(ended.wait, 2), "the build ran on after the stop"
    assert len(prepared) < len(ids) - 3 and not saved.path.exists() and not list(tmp_path.rglob("*.partial"))
    monkeypatch.undo()
    again, building = await open_index_of(sessions, saved)  # the next start builds, and saves, the whole
    await building
    assert not again.loading and saved.path.exists() and answers(again, "人易")[0][0] == ids["人易软件"]


async def test_a_stop_while_worker_processes_prepare_the_chunks_does_not_wait_for_them(engine, tmp_path,
                                                                                      monkeypatch):
    """At 1M customers the chunks are prepared by worker processes: a stop while the build awaits one of
    them (or their start, seconds on a busy machine) ends it at once too, without waiting for the chunks
    handed out (a review measured 36 s from the stop to the end of the thread with four workers). The
    workers are stood in for by threads taking 3 s a chunk."""
    import asyncio
    import contextlib
    import time
    from concurrent.futures import ThreadPoolExecutor

    from bot.db import make_sessionmaker
    from services.lookup import SavedIndex

    class SlowWorkers(ThreadPoolExecutor):
        def __init__(self, max_workers, mp_context=None):
            super().__init__(max_workers)

        def submit(self, fn, *args):
            def slowly():
                time.sleep(3)
                return fn(*args)
            return super().submit(slowly)

    sessions = make_sessionmaker(engine)
    async with sessions() as session:
        await small_book(session)
    monkeypatch.setattr(lookup, "ProcessPoolExecutor", SlowWorkers)
    monkeypatch.setattr(lookup, "_workers_for", lambda total: 2)
    ended = build_thread_watched(monkeypatch)
    saved = SavedIndex(tmp_path / "lookup" / "index-test.bin", "test")
    index, building = await open_index_of(sessions, saved)
    await asyncio.sleep(1)  # chunks handed out, none back yet
    stopped = time.monotonic()
    building.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await building
    assert await asyncio.to_thread(ended.wait, 2), "the build waited for its workers after the stop"
    assert time.monotonic() - stopped < 2 and not saved.path.exists()


def build_thread_watched(monkeypatch):
    """The start's background build made of one customer per chunk, its thread watched: the event is set
    when the thread ends, whichever way."""
    import threading

    import bot.runner as runner

    real, ended = runner._build_in_thread, threading.Event()

    def tracked(*args):
        try:
            return real(*args)
        finally:
            ended.set()

    monkeypatch.setattr(runner, "BACKGROUND_CHUNK", 1)
    monkeypatch.setattr(runner, "_build_in_thread", tracked)
    return ended


async def open_index_of(sessions, saved):
    from bot.runner import open_index

    return await open_index(sessions, wait_below=0, saved=saved)


def test_the_lookup_command_opens_the_saved_index_instead_of_building_one(cli_env, tmp_path, capsys, monkeypatch):
    import asyncio
    import json

    from sqlalchemy.engine import make_url

    from bot.cli import main
    from bot.db import make_engine, make_sessionmaker
    from services.lookup import SavedIndex

    data = tmp_path / "c.csv"
    data.write_text("客户名称,简称,电话\n广州市人易软件技术有限公司,人易软件,020-38881234\n", encoding="utf-8")
    assert main(["import", "customers", str(data)]) == 0
    saved = SavedIndex.under(tmp_path / "data", make_url(cli_env))

    async def save() -> None:  # what the bot does after its first build
        engine = make_engine(cli_env)
        async with make_sessionmaker(engine)() as session:
            save_index(await build_index(session, to_save=True), saved.path, database=saved.database)
        await engine.dispose()

    asyncio.run(save())
    data.write_text("客户名称,简称,电话\n南京金盛贸易有限公司,金盛贸易,025-86661234\n", encoding="utf-8")
    assert main(["import", "customers", str(data)]) == 0  # after it was saved
    capsys.readouterr()

    async def no_build(*args, **kwargs):
        raise AssertionError("built although an index was saved")

    monkeypatch.setattr(lookup, "build_index", no_build)
    assert main(["lookup", "jinsheng", "--json", "--limit", "1"]) == 0
    [match] = json.loads(capsys.readouterr().out)
    assert match["name"] == "南京金盛贸易有限公司"


async def test_an_empty_book_is_saved_and_opened_too(session, tmp_path):
    """A new install: nothing to find yet, and the first customer is found after the next start."""
    path = tmp_path / "lookup.index"
    save_index(await build_index(session, to_save=True), path, database="one")
    index = await open_saved(session, path, database="one")
    assert index is not None and len(index) == 0 and index.search("人易", EVERYONE) == []
    first = await create_customer(session, name="广州市人易软件技术有限公司")
    await session.commit()
    index = await open_saved(session, path, database="one")
    assert index.behind == 1 and answers(index, "人易")[0][0] == first.id


async def test_changes_made_while_it_is_built_or_opened_are_never_lost(engine, tmp_path, monkeypatch):
    """Found in review: a customer added while the build read the documents and archived later stayed
    findable on every start; a rename another process committed while a saved index was being opened was
    taken as loaded, and sync never read it."""
    from bot.db import make_sessionmaker

    sessions = make_sessionmaker(engine)
    async with sessions() as session:
        ids = await small_book(session)
    path = tmp_path / "lookup.index"
    real_stamps, added = lookup._stamps, []

    async def stamps_then_a_rep_adds_one(session):
        stamps = await real_stamps(session)
        if not added:  # a rep adds a customer while the background build reads the documents
            async with sessions() as other:
                added.append((await create_customer(other, name="杭州金盛贸易有限公司")).id)
                await other.commit()
        return stamps

    monkeypatch.setattr(lookup, "_stamps", stamps_then_a_rep_adds_one)
    async with sessions() as session:
        save_index(await build_index(session, to_save=True), path, database="one")
    monkeypatch.setattr(lookup, "_stamps", real_stamps)
    async with sessions() as session:
        await archive_customer(session, added[0])
        await update_customer(session, ids["人易软件"], name="广州市人易科技有限公司")  # something to re-read
        await session.commit()
    real_refresh = lookup.refresh

    async def refresh_then_another_process_renames(index, session, customer_ids=None):
        await real_refresh(index, session, customer_ids)
        async with sessions() as other:
            await update_customer(other, ids["华信电子"], name="深圳市华信通讯有限公司", short_name="华信通讯")
            await other.commit()

    monkeypatch.setattr(lookup, "refresh", refresh_then_another_process_renames)
    async with sessions() as session:
        index = await open_saved(session, path, database="one")
    monkeypatch.setattr(lookup, "refresh", real_refresh)
    assert added[0] not in [m[0] for m in answers(index, "金盛贸易")]  # archived: gone
    async with sessions() as session:
        assert await sync(index, session) == 1  # the rename committed while it was opened
        assert answers(index, "华信通讯")[0][0] == ids["华信电子"]
        assert answers(index, "华信通讯") == answers(await build_index(session), "华信通讯")


def test_a_stop_while_the_postings_are_joined_ends_the_build_there():
    """The last step of a build (every gram's postings joined and copied: seconds at 1M customers) looks at
    the stop too, a step of POSTING_STEP grams at a time; without one it makes the same index as before."""
    import threading

    docs = [lookup.CustomerText(n, None, ["上海恒达物流有限公司" if n == 17 else f"第{n}号贸易有限公司"], ["王芳"],
                                [f"1380013{n:04d}"]) for n in range(1, 60)]

    def built(stop=None):
        builder = lookup._Builder()
        builder.merge(lookup._prepare_chunk((builder.describe(docs), docs)))
        return builder.finish(False, stop)

    stop = threading.Event()
    stop.set()
    with pytest.raises(lookup.BuildStopped):
        built(stop)
    whole = lookup.LookupIndex(built(threading.Event()))
    assert answers(whole, "hdwl")[0][0] == 17 and answers(whole, "13800130042")[0][0] == 42
