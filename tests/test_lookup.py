"""A rep finds the right customer from whatever they type: hanzi, pinyin, initials, typos, phones."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from models import ContactPerson, Role
from services.access import Viewer, viewer_for
from services.customers import archive_customer, create_customer, update_customer
from services.importer import import_file
from services.lookup import LookupIndex, build_index, refresh, sync
from services.textnorm import core_name, fold, initials, pinyin
from services.users import add_user
from tests.lookup_set import evaluate, load_customers, load_queries

EVERYONE = Viewer.everyone()


async def small_book(session):
    """A handful of customers with the traps reps run into."""
    made = {}
    for name, short, phone, people in [
        ("广州市人易软件技术有限公司", "人易软件", "020-3888 1234", [("曾志伟", "138 2600 1234")]),
        ("广州市人艺文化传播有限公司", "人艺文化", "020-8765 4321", [("单丽", "13902223333")]),
        ("上海恒达物流股份有限公司", "恒达物流", "021-5555 7777", [("仇晓华", "13611112222")]),
        ("Acme Trading Co., Ltd.", "Acme", "+1 (415) 555-0100", [("John Smith", "+1 415 555 0199")]),
        ("Müller Präzisionstechnik GmbH", None, "+49 711 1234567", [("Jürgen Weber", None)]),
        ("重庆长江物流集团有限公司", "长江物流", "023-61234567", [("欧阳娜", "13983001122")]),
        ("深圳市华信电子科技有限公司", "华信电子", None, []),
    ]:
        customer = await create_customer(session, name=name, short_name=short, phone=phone)
        for person, mobile in people:
            session.add(ContactPerson(customer_id=customer.id, name=person, mobile=mobile))
        made[short or name] = customer.id
    await session.commit()
    return made


def top(index, query, viewer=EVERYONE, limit=3):
    return index.search(query, viewer, limit)


@pytest.fixture
async def book(session):
    ids = await small_book(session)
    return ids, await build_index(session)


QUERIES = [
    ("人易软件", "人易软件", "alias"),  # exact short name
    ("人易", "人易软件", "alias"),  # partial
    ("广州市人易软件技术有限公司", "人易软件", "name"),  # the full legal name
    ("广州人易", "人易软件", "name"),  # city prefix typed, no suffix (the city and the words, in the name)
    ("人易较件", "人易软件", "alias"),  # a wrong character
    ("人易软建", "人易软件", "pinyin"),  # 建 sounds like 件: the input method's homophone
    ("人软件", "人易软件", "alias"),  # a missing character
    ("廣州人易軟件", "人易软件", "name"),  # Traditional characters
    ("恒答物流", "恒达物流", "pinyin"),  # homophone picked by the input method
    ("hengda", "恒达物流", "pinyin"),  # full pinyin
    ("heng da wu liu", "恒达物流", "pinyin"),  # pinyin with spaces
    ("hengdawul", "恒达物流", "pinyin"),  # pinyin still being typed
    ("hdwl", "恒达物流", "pinyin"),  # initials
    ("changjiang", "长江物流", "pinyin"),  # polyphonic 长: chang here, not zhang
    ("ACME", "Acme", "alias"),  # case
    ("acme trdng", "Acme", "name"),  # typo
    ("trading acme", "Acme", "name"),  # word order
    ("muller", "Müller Präzisionstechnik GmbH", "name"),  # accents
    ("020 3888 1234", "人易软件", "phone"),  # a full number formatted differently
    ("+86 138-2600-1234", "人易软件", "phone"),  # a contact's mobile with country code
    ("1234", "人易软件", "phone"),  # last four digits (ties are broken consistently)
    ("5550100", "Acme", "phone"),  # last digits of a foreign number
    ("曾志伟", "人易软件", "contact"),  # a contact person
    ("zengzhiwei", "人易软件", "contact"),  # surname 曾 read zeng, not ceng
    ("shanli", "人艺文化", "contact"),  # 单 read shan
    ("qiuxiaohua", "恒达物流", "contact"),  # 仇 read qiu
    ("ouyangna", "长江物流", "contact"),  # compound surname
    ("jurgen", "Müller Präzisionstechnik GmbH", "contact"),
    ("欧阳", "长江物流", "contact"),  # a surname alone
]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # PostgreSQL: all at once, below
@pytest.mark.parametrize("query, expected, why", QUERIES)
async def test_each_kind_of_query_finds_the_customer(book, query, expected, why):
    ids, index = book
    matches = top(index, query)
    assert matches, query
    assert matches[0].customer_id == ids[expected], [(m.name, m.score, m.why) for m in matches]
    assert matches[0].why == why


@pytest.mark.postgres
async def test_each_kind_of_query_finds_the_customer_on_postgresql(pg_url):
    """The same queries over the index built from PostgreSQL (each query above runs on SQLite; the storage
    matters once, for the whole set: one database for all of them)."""
    from bot.db import make_engine, make_sessionmaker

    engine = make_engine(pg_url)
    try:
        async with make_sessionmaker(engine)() as session:
            ids = await small_book(session)
            index = await build_index(session)
    finally:
        await engine.dispose()
    wrong = [(query, [(m.name, m.why) for m in top(index, query)]) for query, expected, why in QUERIES
             if not top(index, query) or (top(index, query)[0].customer_id, top(index, query)[0].why)
             != (ids[expected], why)]
    assert wrong == []


async def test_results_are_ranked_with_scores_and_the_better_match_first(book):
    ids, index = book
    matches = top(index, "人易", limit=5)
    assert [m.customer_id for m in matches][:1] == [ids["人易软件"]]
    assert all(a.score >= b.score for a, b in zip(matches, matches[1:]))
    # 人艺 sounds like 人易: found, but below the customer whose name it really is.
    assert ids["人艺文化"] in [m.customer_id for m in top(index, "人易", limit=5)]
    assert top(index, "人艺")[0].customer_id == ids["人艺文化"]


async def test_boilerplate_does_not_drown_the_distinctive_part(book):
    ids, index = book
    # Every Guangzhou company shares 广州市 and 有限公司; only the distinctive part decides.
    assert top(index, "广州市华信电子有限公司")[0].customer_id == ids["华信电子"]
    assert core_name(fold("广东省广州市人易软件技术有限公司")) == "人易软件技术"
    assert core_name(fold("Acme Trading Co., Ltd.")) == "acme trading"
    assert core_name(fold("兰州广东电子科技有限公司")) == "广东电子科技"  # a brand that is a place name


@pytest.mark.parametrize("query", ["", "   ", "x", "？？", "😀"])
async def test_queries_that_cannot_mean_a_customer_return_nothing(book, query):
    _, index = book
    assert top(index, query) == []


@pytest.mark.parametrize("name, reading, capitals", [
    ("曾志伟", "zengzhiwei", "zzw"), ("单丽", "shanli", "sl"), ("仇晓华", "qiuxiaohua", "qxh"),
    ("朴正浩", "piaozhenghao", "pzh"), ("覃海燕", "qinhaiyan", "qhy"), ("解晓明", "xiexiaoming", "xxm"),
    ("区志强", "ouzhiqiang", "ozq"), ("欧阳娜", "ouyangna", "oyn"), ("尉迟恭", "yuchigong", "ycg"),
    ("万俟卨", "moqixie", "mqx"), ("查良镛", "zhaliangyong", "zly"), ("乐嘉", "yuejia", "yj"),
])
def test_surnames_are_read_by_the_surname_table(name, reading, capitals):
    assert pinyin(name, person=True) == reading
    assert initials(name, person=True) == capitals


def test_the_general_table_alone_gets_those_surnames_wrong():
    # Why the surname table exists: read as ordinary words, these characters come out differently.
    assert pinyin("曾") == "ceng" and pinyin("单") == "dan" and pinyin("仇") == "chou" and pinyin("朴") == "pu"


async def test_visibility_is_applied_inside_the_search_not_after_a_top_k_cut(session):
    manager = await add_user(session, name="王经理", role=Role.manager)
    rep = await add_user(session, name="李业务", manager_id=manager.id)
    other = await add_user(session, name="张业务", manager_id=manager.id)
    stranger = await add_user(session, name="外人")
    # Fifty customers that match "华信" better than the rep's own, all owned by someone else.
    for i in range(50):
        await create_customer(session, name=f"华信{i}号有限公司", short_name="华信", owner_id=other.id)
    mine = await create_customer(session, name="深圳市华信达精密机械有限公司", owner_id=rep.id)
    unassigned = await create_customer(session, name="华信无主有限公司", short_name="华信无主")
    await session.commit()
    index = await build_index(session)

    def found(viewer, limit=5):
        return {m.customer_id for m in index.search("华信", viewer, limit=limit)}

    # The rep's own customer ranks far below the fifty, yet it is found: filtering happens before the cut.
    assert found(await viewer_for(session, rep)) == {mine.id, unassigned.id}
    assert found(await viewer_for(session, rep, reps_see_unassigned=False)) == {mine.id}
    assert found(await viewer_for(session, stranger)) == {unassigned.id}
    assert len(found(await viewer_for(session, manager), limit=100)) == 52  # the whole team's, and unassigned
    rep.active = False
    assert found(await viewer_for(session, rep)) == set()


async def test_the_index_follows_changes_at_once(session):
    index = await build_index(session)
    assert index.search("博远", EVERYONE) == []

    created = await create_customer(session, name="杭州博远教育科技有限公司", short_name="博远教育")
    await session.commit()
    await refresh(index, session)  # what the bot does after each committed update
    assert index.search("boyuan", EVERYONE)[0].customer_id == created.id

    await update_customer(session, created.id, name="杭州博文教育科技有限公司", short_name="博文教育")
    await session.commit()
    await refresh(index, session)
    assert [m.customer_id for m in index.search("博文教育", EVERYONE)] == [created.id]
    assert all(m.matched != "博远教育" for m in index.search("博远教育", EVERYONE))

    session.add(ContactPerson(customer_id=created.id, name="覃海燕", mobile="13807712345"))
    await session.commit()
    await refresh(index, session, [created.id])
    assert index.search("qinhaiyan", EVERYONE)[0].why == "contact"

    await archive_customer(session, created.id)
    await session.commit()
    await refresh(index, session)
    assert index.search("博文教育", EVERYONE) == [] and len(index) == 0


async def test_changes_committed_by_another_process_are_picked_up_by_sync(session, tmp_path):
    index = await build_index(session)
    path = tmp_path / "c.csv"
    path.write_text("客户名称,简称,电话\n南京金盛贸易有限公司,金盛贸易,025-86661234\n", encoding="utf-8")
    report = await import_file(session, "customers", path)  # e.g. `python main.py import` elsewhere
    await session.commit()
    assert report.created == 1 and index.search("金盛", EVERYONE) == []
    assert await sync(index, session) >= 1
    assert index.search("jinsheng", EVERYONE)[0].name == "南京金盛贸易有限公司"
    assert index.search("86661234", EVERYONE)[0].why == "phone"


def test_an_empty_index_answers_politely():
    assert LookupIndex().search("人易", EVERYONE) == []


async def test_accuracy_on_the_labelled_set(session):
    """The floors this search reaches on tests/data (≥300 labelled queries of every kind)."""
    ids = await load_customers(session)
    index = await build_index(session)
    queries = load_queries()
    assert len(queries) >= 300 and len({k.rstrip("~") for k, _, _ in queries}) >= 15
    accuracy = evaluate(lambda q: [m.customer_id for m in index.search(q, EVERYONE, 3)], queries, ids)
    assert accuracy.top1_rate >= 0.98, accuracy.misses[:10]
    assert accuracy.top3_rate >= 0.99, accuracy.misses[:10]
    # Queries another customer fits equally well: the right one is still among the first three.
    assert accuracy.ambiguous_top3_rate >= 0.85


def test_cli_lookup_prints_matches_and_answers_batches_in_json(cli_env, tmp_path, capsys):
    from bot.cli import main

    data = tmp_path / "c.csv"
    data.write_text("客户名称,简称,电话\n广州市人易软件技术有限公司,人易软件,020-38881234\n"
                    "上海恒达物流股份有限公司,恒达物流,021-55557777\n", encoding="utf-8")
    assert main(["import", "customers", str(data)]) == 0
    capsys.readouterr()
    assert main(["--lang", "en", "lookup", "renyi"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("1. 广州市人易软件技术有限公司") and "pinyin" in out
    assert main(["lookup", "hdwl", "--json", "--limit", "1"]) == 0
    [match] = json.loads(capsys.readouterr().out)
    assert (match["name"], match["why"]) == ("上海恒达物流股份有限公司", "pinyin")
    queries = tmp_path / "q.txt"
    queries.write_text("人易\n\n55557777\n不存在的公司\n", encoding="utf-8")
    assert main(["lookup", "--batch", str(queries), "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["query"] for line in lines] == ["人易", "55557777", "不存在的公司"]
    assert lines[0]["matches"][0]["name"] == "广州市人易软件技术有限公司"
    assert lines[1]["matches"][0]["why"] == "phone" and lines[2]["matches"] == []
    assert main(["--lang", "en", "lookup"]) == 2
    assert "give a query" in capsys.readouterr().err


async def test_a_build_split_over_worker_processes_finds_exactly_the_same(session):
    await small_book(session)
    alone = await build_index(session, workers=1)
    # Several chunks of two, so the workers really share the work and their results are merged in order.
    shared = await build_index(session, workers=2, chunk=2)
    assert len(shared) == len(alone) > 4
    for query in ("人易", "renyi", "hdwl", "1234", "acme trdng", "zengzhiwei", "廣州人易軟件"):
        assert [(m.customer_id, m.score, m.why) for m in shared.search(query, EVERYONE)] == \
            [(m.customer_id, m.score, m.why) for m in alone.search(query, EVERYONE)], query


async def test_a_card_opens_directly_only_when_the_lookup_is_sure_and_never_on_the_wrong_customer(session):
    from services.lookup import confident
    from tests.lookup_set import direct_opens, load_customers, load_queries

    ids = await load_customers(session)
    index = await build_index(session)
    opens = direct_opens(confident, lambda q: index.search(q, EVERYONE, 8), load_queries(), ids)
    assert opens.wrong == []
    assert opens.rate >= 0.5  # half the queries still need no second tap


async def test_sync_reloads_only_what_changed_when_thousands_share_one_timestamp(session, monkeypatch):
    """After demo-data or an import every customer has the same updated_at: a sync must not read them all
    again (it froze the bot for 5-6 s every 30 s at 100k customers)."""
    from datetime import UTC, datetime

    from sqlalchemy import update

    from models import Customer
    from services import lookup

    for n in range(60):
        await create_customer(session, name=f"同一时刻客户{n:02d}有限公司")
    stamp = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
    await session.execute(update(Customer).values(updated_at=stamp))
    await session.commit()
    index = await build_index(session)
    reloaded: list[int] = []
    real = lookup.load_documents

    async def counting(session_, ids=None):
        docs = await real(session_, ids)
        reloaded.extend(d.customer_id for d in docs)
        return docs

    monkeypatch.setattr(lookup, "load_documents", counting)
    windows_read: list = []
    real_recent = lookup._recent

    async def recent(session_, since):
        windows_read.append(since)
        return await real_recent(session_, since)

    monkeypatch.setattr(lookup, "_recent", recent)
    assert await sync(index, session) == 0 and reloaded == []  # nothing changed: nothing read again
    assert await sync(index, session) == 0 and reloaded == []
    assert len(windows_read) <= 1  # from then on not even the ids and times (the window's fingerprint is the same)
    windows_read.clear()
    assert await sync(index, session) == 0 and windows_read == []
    one = await create_customer(session, name="后来新增的客户有限公司")  # a later change
    await session.commit()
    assert await sync(index, session) == 1 and reloaded == [one.id]
    # Another process commits a customer stamped with exactly the newest time: still picked up, once.
    late = await create_customer(session, name="同一时刻补录客户有限公司")
    newest = (await session.execute(select(func.max(Customer.updated_at)))).scalar()
    await session.execute(update(Customer).where(Customer.id == late.id).values(updated_at=newest))
    await session.commit()
    reloaded.clear()
    assert await sync(index, session) == 1 and reloaded == [late.id]
    assert await sync(index, session) == 0
    assert index.search("同一时刻补录客户", EVERYONE)[0].customer_id == late.id
    # An import stamps rows with the database's clock (whole seconds on SQLite, the transaction's start on
    # PostgreSQL): a row committed now may carry a time a little before the newest seen. Still picked up.
    from datetime import timedelta

    earlier = await create_customer(session, name="事务较早开始的客户有限公司")
    await session.execute(update(Customer).where(Customer.id == earlier.id)
                          .values(updated_at=newest - timedelta(seconds=40)))
    await session.commit()
    reloaded.clear()
    assert await sync(index, session) == 1 and reloaded == [earlier.id]
    assert index.search("事务较早开始的客户", EVERYONE)[0].customer_id == earlier.id


def test_the_lookup_reads_pinyins_character_table_without_loading_its_phrase_table():
    """Issue 18 (ready within 5 s): importing pypinyin loads its phrase table, 0.55-0.65 s of every start,
    and the lookup uses only the table of each character's readings — read from its data file, the same."""
    import subprocess
    import sys

    from pypinyin.pinyin_dict import pinyin_dict

    from services.textnorm import pinyin_table

    assert pinyin_table() == pinyin_dict
    code = "import sys, services.lookup; print('pypinyin' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr[-2000:]


def test_the_lookups_per_name_caches_hold_nothing_the_cycle_collector_walks():
    """Issue 18: tens of thousands of cached frozensets and dataclasses made the collector's full passes
    take 50-80 ms of a lookup at 100k customers. Tuples of strings are left out of its passes."""
    import gc

    from services.lookup import han_info, parse_query
    from services.queryparts import facts

    values = [han_info("上海恒达物流", False), han_info("张伟", True), facts("上海恒达物流\x1f恒达物流北京分公司")]
    gc.collect()
    gc.collect()  # a tuple leaves the collector's lists once what it holds has (at most two passes here)
    assert not any(gc.is_tracked(value) for value in values)
    assert facts("恒达物流北京分公司") == (("北京",), "北京", True)
    assert " heng " in han_info("恒达", False)[1][0] and " zhang " in han_info("张伟", True)[2]
    assert parse_query("恒达").han_readings[0] == (" heng ",)


def test_characters_without_a_reading_never_sound_like_one_another():
    """A character pypinyin has no reading for is no homophone of another such character (review of
    issue 18's change of how readings are kept)."""
    from services.lookup import _score_han, parse_query

    assert _score_han(parse_query("㐃"), "㐂㐂", True)[1] != "pinyin"
    assert _score_han(parse_query("㐃"), "张㐂", True)[1] != "pinyin"
    assert _score_han(parse_query("张卫"), "张伟", True)[1] == "pinyin"  # a real homophone still counts


async def test_a_build_copies_its_postings_in_steps_and_finds_the_same(monkeypatch):
    """Beside a serving bot the build's last step copies the postings a slice of grams at a time (one copy
    of everything held the interpreter 0.2-0.3 s at 1M customers): the index is the same whatever the step."""
    import numpy as np

    import services.lookup
    from services.lookup import CustomerText

    docs = [CustomerText(n, None, [f"{city}{trade}{n}号有限公司", f"{trade}{n}"], [], [f"1380013{n:04d}"])
            for n, (city, trade) in enumerate((c, t) for c in ("上海", "广州", "成都") for t in ("物流", "软件", "食品"))]
    whole = await LookupIndex.from_documents(docs)
    for step in (1, 3, 5):  # a last step of fewer grams, too
        monkeypatch.setattr(services.lookup, "POSTING_STEP", step)
        stepped = await LookupIndex.from_documents(docs)
        assert len(stepped._slot) > 10 and len(stepped._slot) % 3 and len(stepped._slot) % 5
        assert stepped._slot == whole._slot and np.array_equal(stepped._offsets, whole._offsets)
        assert np.array_equal(stepped._postings, whole._postings)
    everyone = Viewer.everyone()
    assert [m.customer_id for m in stepped.search("广州软件", everyone)] == \
        [m.customer_id for m in whole.search("广州软件", everyone)] != []
