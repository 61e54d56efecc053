"""Just after a start the bot answers at once: while the whole lookup index is built beside it, a rep finds a
customer by its exact name, short name, alias or whole phone number, is told the list is still loading
otherwise, and cannot create a customer whose duplicates cannot be checked yet. When the build is done, the
index has every change made meanwhile (services.lookup rule 6)."""

from __future__ import annotations

import asyncio

from sqlalchemy import func, select

from bot.callbacks import CustomerCallback
from bot.db import make_sessionmaker
from bot.runner import complete_index
from models import Customer
from services.access import Viewer
from services.customers import archive_customer, create_customer, update_customer
from services.lookup import build_index, finish_loading, refresh, start_index
from services.users import add_user
from tests.botkit import make_app, person, text_update

REP, OTHER = 5100, 5200


async def _people_and_customers(session):
    rep = await add_user(session, name="Lee", telegram_id=REP, language="en")
    other = await add_user(session, name="Wang", telegram_id=OTHER, language="en")
    mine = await create_customer(session, name="广州市人易软件技术有限公司", short_name="人易软件", owner_id=rep.id,
                                 phone="020-8888 1234", aliases=["RenYi Soft"])
    theirs = await create_customer(session, name="深圳华为技术有限公司", owner_id=other.id, phone="0755-2878 0808")
    await session.commit()
    return rep, other, mine, theirs


def ids(matches) -> list[int]:
    return [m.customer_id for m in matches]


async def test_a_loading_index_finds_exact_names_and_phones_for_whoever_may_see_them(session):
    rep, other, mine, theirs = await _people_and_customers(session)
    index = await start_index(session)
    everyone, lee = Viewer.everyone(), Viewer(rep.id, "rep", frozenset({rep.id}), True)
    assert index.loading and len(index) == 2
    for query in ("广州市人易软件技术有限公司", "人易软件", "人易 软件", "renyi soft", "RenYi-Soft", "020 8888 1234",
                  "02088881234"):
        [found] = index.search(query, everyone)
        assert found.customer_id == mine.id and found.exact and found.score == 100, query
    assert index.search("广州市人易软件技术有限公司", everyone)[0].why == "name"
    assert index.search("renyi soft", everyone)[0].why == "alias"
    assert index.search("020-88881234", everyone)[0].why == "phone"
    # Anything short of the exact name or the whole number waits for the whole index.
    for query in ("人易", "renyi", "ry", "1234", "广州人易软件"):
        assert index.search(query, everyone) == [], query
    # Visibility holds while loading too: Lee finds his own customer, not Wang's.
    assert ids(index.search("深圳华为技术有限公司", lee)) == []
    assert ids(index.search("深圳华为技术有限公司", everyone)) == [theirs.id]


async def test_finishing_keeps_every_change_made_while_loading(session):
    rep, other, mine, theirs = await _people_and_customers(session)
    index = await start_index(session)
    built = await build_index(session)  # read before the changes below, as a long build would be
    # While it was building: a customer renamed, one created, one archived (each refreshed after its commit,
    # as the bot's middleware does).
    await update_customer(session, mine.id, name="广州市人易云科技有限公司", short_name="人易云")
    new = await create_customer(session, name="佛山顺德美的电器", owner_id=rep.id)
    await archive_customer(session, theirs.id)
    await session.commit()
    await refresh(index, session, [mine.id, new.id, theirs.id])
    everyone = Viewer.everyone()
    assert ids(index.search("人易云", everyone)) == [mine.id]  # the new name already works while loading
    assert ids(index.search("深圳华为技术有限公司", everyone)) == []  # and the archived one is gone
    assert await finish_loading(index, built, session) == 3
    assert not index.loading and len(index) == 2
    assert ids(index.search("人易云", everyone))[:1] == [mine.id]
    assert ids(index.search("美的", everyone))[:1] == [new.id]  # a partial name: the whole index answers
    assert ids(index.search("华为", everyone)) == []
    assert not any(m.exact for m in index.search("人易软件", everyone))  # the old short name is gone


async def test_complete_index_builds_in_a_thread_beside_the_running_loop(engine):
    sessions = make_sessionmaker(engine)
    async with sessions() as session:
        _rep, _other, mine, _theirs = await _people_and_customers(session)
        index = await start_index(session)
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    ticking = asyncio.create_task(tick())
    await complete_index(index, sessions)
    ticking.cancel()
    assert not index.loading and ticks > 0
    assert ids(index.search("人易", Viewer.everyone()))[:1] == [mine.id]


async def test_complete_index_retries_after_a_failed_build(engine, monkeypatch):
    import bot.runner as runner

    sessions = make_sessionmaker(engine)
    async with sessions() as session:
        await _people_and_customers(session)
        index = await start_index(session)
    calls = 0
    real = runner._build_in_thread

    def flaky(*args):
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("database went away")
        return real(*args)

    monkeypatch.setattr(runner, "_build_in_thread", flaky)
    await complete_index(index, sessions, retry_after=0.01)
    assert calls == 2 and not index.loading and index.search("人易", Viewer.everyone())


rep = person(REP, language="en")


async def test_right_after_a_start_a_rep_finds_by_exact_name_and_is_told_the_rest_is_loading(engine):
    async with make_sessionmaker(engine)() as session:
        _rep, _other, mine, _theirs = await _people_and_customers(session)
    app = await make_app(engine, loading=True)
    [card] = (await app.send(text_update(rep, "人易软件"))).sent()
    assert card.text.startswith("<b>广州市人易软件技术有限公司</b>")
    [wait] = (await app.send(text_update(rep, "人易"))).sent()
    assert "still loading" in wait.text and "exact full name" in wait.text
    assert wait.reply_markup is None  # no "add it" while a namesake may be there
    [refused] = (await app.send(text_update(rep, "/new 佛山顺德美的电器"))).sent()
    assert "still loading" in refused.text and "佛山顺德美的电器" in refused.text
    [history] = (await app.send(text_update(rep, "/history 人易"))).sent()
    assert "still loading" in history.text
    await complete_index(app.index, app.sessions)
    found = (await app.send(text_update(rep, "人易"))).sent()
    assert found and "still loading" not in found[-1].text
    assert CustomerCallback(action="card", id=mine.id).pack() in str(found[-1].reply_markup) \
        or found[-1].text.startswith("<b>广州市人易软件技术有限公司</b>")
    async with app.sessions() as session:
        # nothing was created by the refused /new
        assert await session.scalar(select(func.count()).where(Customer.name == "佛山顺德美的电器")) == 0


async def test_the_loading_tables_are_freed_in_slices_while_the_bot_goes_on(session, monkeypatch):
    """At 1M customers the exact-name tables hold 3 million keys: dropped at once when the whole index took
    over, their freeing stalled the bot's loop 0.8 s. They are emptied in slices, the loop running between."""
    import services.lookup

    monkeypatch.setattr(services.lookup, "RELEASE_SLICE", 2)
    await _people_and_customers(session)
    index = await start_index(session)
    for n in range(10):  # more exact names than one slice
        index._remember(1000 + n, None, [f"测试客户{n}号"], [])
    exact = index._exact
    full = len(exact)
    built = await build_index(session)
    sizes: list[int] = []

    async def ticker():
        while True:
            sizes.append(len(exact))
            await asyncio.sleep(0)

    ticking = asyncio.create_task(ticker())
    await finish_loading(index, built, session)
    ticking.cancel()
    await asyncio.wait({ticking})
    assert not exact  # freed
    assert any(0 < size < full for size in sizes)  # the loop ran between the slices
    assert index._exact is not exact and not index.loading


async def test_the_cycle_collector_never_walks_the_big_tables_a_start_makes(session, monkeypatch):
    """At 1M customers the collector's passes over what a start reads held the bot's loop: a 268 ms pass
    over the loading index's million tuples before the bot could answer, and six full passes (57-147 ms)
    while the build read the customers of the look-back window (a whole import's rows). The loading tables
    are frozen as soon as they are read, and the window is read with the collector paused."""
    import gc

    import services.lookup

    await _people_and_customers(session)
    try:
        gc.unfreeze()
        index = await start_index(session)
        made = {id(value) for value in index._quick.values()}  # (owner, name) tuples: the collector tracks them
        assert made and all(gc.is_tracked(value) for value in index._quick.values())
        walked = {id(entry) for generation in (0, 1, 2) for entry in gc.get_objects(generation)}
        assert not made & walked  # frozen: in none of the generations the collector walks
    finally:
        gc.unfreeze()
    collector_on: list[bool] = []
    reading = services.lookup._recent

    async def watched(*args):
        collector_on.append(gc.isenabled())
        return await reading(*args)

    monkeypatch.setattr(services.lookup, "_recent", watched)
    assert gc.isenabled()
    await build_index(session)
    assert collector_on == [False] and gc.isenabled()


def test_overlapping_pauses_of_the_collector_leave_it_on_only_when_the_last_one_ends():
    """The lookup build's thread and the bot's loop pause the process's one collector at the same time: the
    first pause to end must not switch it back on under the other, and the last must (each pause on its
    own could leave it off for the rest of the process's life, found by review)."""
    import gc

    from services.sql import collector_paused

    assert gc.isenabled()
    edit, build = collector_paused(), collector_paused()  # a rep's edit on the loop; the build's thread
    edit.__enter__()
    build.__enter__()
    edit.__exit__(None, None, None)  # the edit ends first
    assert not gc.isenabled()  # the build is still reading
    build.__exit__(None, None, None)
    assert gc.isenabled()
    gc.disable()  # paused by someone else before: left off
    try:
        with collector_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
