"""A rep finds the customer from what reps really type: the exact name first, every word counted (city,
brand, trade, branch), punctuation and word order ignored, mixed script, English trade words, people
with an honorific and the last digits of their mobile, switchboards, and nothing confident when the firm
is not there — over a book full of near-duplicates."""

from __future__ import annotations

import pytest

from services.access import Viewer
from services.lookup import CustomerText, LookupIndex, confident
from services.parsing import phone_digits
from services.queryparts import split

EVERYONE = Viewer.everyone()

# (name, short name, switchboard, [(contact, mobile)])
BOOK = [
    ("西安市柏骏化工股份有限公司", None, "029-88112233", [("周强", "13900001111")]),
    ("西安柏骏控股化工有限公司", None, "029-88114455", [("吴静", "13900002222")]),
    ("北京栋佳包装有限公司", "栋佳包装", "010-62345678", [("李建国", "13811113349")]),
    ("佛山栋佳包装有限公司", None, "0757-82345678", [("李娜", "13822221111")]),
    ("天津市天亿包装集团有限公司", None, "022-23456789", [("王芳", "13733334444")]),
    ("天津市天恒包装有限公司", None, "022-23450000", []),
    ("西安鼎鸿新材料有限公司", None, "029-81234567", [("杨帆", "13944444657")]),
    ("北京鼎鸿新材料科技有限公司", None, "010-81234567", [("杨洋", "13955551234")]),
    ("武汉圆辉塑胶有限公司", None, "027-87654321", [("张伟", "13600008888")]),
    ("广州圆辉塑胶制品有限公司", None, "020-87654321", [("张伟", "13611112222")]),
    ("武汉福新机械有限公司", None, "027-85550000", []),
    ("福州福新机械有限公司", None, "0591-67701234", [("陈敏", "13500006666")]),
    ("台州恒泰汽车配件有限公司", None, "0576-88881104", [("王刚", "13500003349")]),
    ("上海华星贸易有限公司", "华星贸易", "021-26888888", [("张伟", "13912348888")]),
    ("上海华星贸易有限公司北京分公司", None, "010-26880000", [("刘洋", "13912340000")]),
    ("深圳华兴电子有限公司", None, "0755-26880001", []),
    ("杭州金源医疗器械有限公司", None, "0571-85556666", []),
    ("Bright Apex Electronics Limited", None, None, []),
]


def _documents() -> list[CustomerText]:
    docs = []
    for n, (name, short, phone, people) in enumerate(BOOK, 1):
        names = [name] + ([short] if short else [])
        numbers = [phone_digits(phone)] if phone else []
        doc = CustomerText(n, None, names, [p for p, _m in people], numbers + [phone_digits(m) for _p, m in people],
                           [[phone_digits(m)] for _p, m in people])
        docs.append(doc)
    return docs


@pytest.fixture(scope="module")
def index():
    """Built once for the module (the tests only search it)."""
    import asyncio

    return asyncio.run(LookupIndex.from_documents(_documents()))


def first(index: LookupIndex, query: str) -> str:
    matches = index.search(query, EVERYONE, limit=5)
    assert matches, query
    return matches[0].name


@pytest.mark.parametrize("query, expected", [
    # The exact name is first, even beside a near-duplicate that scores as high.
    ("西安市柏骏化工股份有限公司", "西安市柏骏化工股份有限公司"),
    ("西安柏骏控股化工有限公司", "西安柏骏控股化工有限公司"),
    # Every part counts: the city the rep typed decides between the same brand in two cities.
    ("佛山栋佳包装", "佛山栋佳包装有限公司"),
    ("北京栋佳包装", "北京栋佳包装有限公司"),
    # Punctuation as phone keyboards add it, quotes, full-width brackets, separators, a full-width space.
    ("天津市天亿包装集团有限公司。", "天津市天亿包装集团有限公司"),
    ("“天亿包装”", "天津市天亿包装集团有限公司"),
    ("天亿（天津）包装", "天津市天亿包装集团有限公司"),
    ("天津、天亿·包装", "天津市天亿包装集团有限公司"),
    ("天津\u3000天亿包装", "天津市天亿包装集团有限公司"),
    ("ＢＲＩＧＨＴ ＡＰＥＸ", "Bright Apex Electronics Limited"),
    ("ＳＨＡＮＧＨＡＩ ＨＵＡＸＩＮＧ ＴＲＡＤＩＮＧ", "上海华星贸易有限公司"),
    # Word order and spaces.
    ("新材料 西安鼎鸿", "西安鼎鸿新材料有限公司"),
    ("塑胶 武汉圆辉", "武汉圆辉塑胶有限公司"),
    ("福新 武汉", "武汉福新机械有限公司"),
    ("机械 福州 福新", "福州福新机械有限公司"),
    # Mixed script and run-on pinyin.
    ("dongjia包装 佛山", "佛山栋佳包装有限公司"),
    ("佛山dongjia", "佛山栋佳包装有限公司"),
    ("foshandongjiabaozhuang", "佛山栋佳包装有限公司"),
    ("wuhanyuanhui", "武汉圆辉塑胶有限公司"),
    ("djbz 佛山", "佛山栋佳包装有限公司"),
    # English trade words for a firm without an English name.
    ("jinyuan medical devices", "杭州金源医疗器械有限公司"),
    ("Foshan Dongjia Packaging", "佛山栋佳包装有限公司"),
    # People and numbers as reps say them.
    ("李总3349", "北京栋佳包装有限公司"),
    ("王 3349", "台州恒泰汽车配件有限公司"),
    ("杨经理 尾号4657", "西安鼎鸿新材料有限公司"),
    ("张伟 武汉", "武汉圆辉塑胶有限公司"),
    ("张伟 广州", "广州圆辉塑胶制品有限公司"),
    ("0591 6770", "福州福新机械有限公司"),
    ("(0576)1104", "台州恒泰汽车配件有限公司"),
    ("2688-8888", "上海华星贸易有限公司"),
    # Branches: a branch city selects the branch; without 分公司 the head office comes first.
    ("华星北京分公司", "上海华星贸易有限公司北京分公司"),
    ("北京华星分公司", "上海华星贸易有限公司北京分公司"),
    ("华星(北京)分公司", "上海华星贸易有限公司北京分公司"),
    ("华星贸易", "上海华星贸易有限公司"),
    # Pinyin with a typo: a dropped letter, zh/z, ng/n.
    ("dongjiabaozuang", "北京栋佳包装有限公司"),
    ("yuanhuisujiao wuhan", "武汉圆辉塑胶有限公司"),
    ("tianyibaozhuan tianjin", "天津市天亿包装集团有限公司"),
])
async def test_what_reps_type_finds_the_one_right_customer(index, query, expected):
    assert first(index, query) == expected, [(m.name, m.score, m.why) for m in index.search(query, EVERYONE, 5)]


async def test_the_exact_name_opens_directly_and_a_contradicted_city_ranks_below(index):
    [best, *rest] = index.search("西安市柏骏化工股份有限公司", EVERYONE, 5)
    assert confident([best, *rest]) == best and best.score == 100
    matches = index.search("佛山栋佳包装", EVERYONE, 5)
    names = [m.name for m in matches]
    assert names.index("佛山栋佳包装有限公司") < names.index("北京栋佳包装有限公司")
    assert matches[0].score - next(m.score for m in matches if m.name.startswith("北京")) >= 10


async def test_a_firm_that_is_not_there_is_never_a_confident_answer(index):
    for query in ("深圳蓝鲸物流", "成都天亿化工", "wuhan dongjia logistics", "赵总 5555"):
        assert confident(index.search(query, EVERYONE, 5)) is None, query


def test_the_query_is_taken_apart_into_what_it_says():
    parts = split("张经理 尾号8888")
    assert [(p.surname, p.digits) for p in parts.people] == [("张", "8888")] and not parts.digits
    parts = split("华星(北京)分公司")
    assert parts.places == ["北京"] and parts.branch and parts.han == ["华星"]
    parts = split("shanghai huaxing trading")
    assert parts.places == ["上海"] and parts.latin == ["huaxing"] and parts.trades == ["贸易"]
    assert split("天津市天亿包装集团有限公司。").cleaned == "天津市天亿包装集团有限公司"
    assert split("heng da wu liu").latin == ["hengdawuliu"]


async def test_a_typo_that_spells_other_pinyin_still_finds_the_firm_among_many_namesakes():
    # kailong → ailong: still pinyin, so its syllable grams fit every …隆包装 equally; more of them than the
    # lookup scores one by one. The sound trigrams (ail, ilo …) tell 凯隆 apart.
    firsts = "昌丰宏华金明鹏瑞盛顺天祥新兴鑫永裕振中德恒宇安福广嘉晶力龙荣东方国建"  # none spelled …ai
    book = [CustomerText(n, None, [f"{city}{first}隆包装有限公司"], [], [])
            for n, (first, city) in enumerate(((f, c) for f in firsts for c in ("济南", "无锡")), 1)]
    book.append(CustomerText(len(book) + 1, None, ["东莞凯隆国际包装有限公司"], [], []))
    index = await LookupIndex.from_documents(book)
    matches = index.search("ailongbaozhuang", EVERYONE, 5)
    assert matches[0].name == "东莞凯隆国际包装有限公司", [(m.name, m.score) for m in matches]
    # Pinyin that finds its firm for sure is not searched again: the same answer, nothing added.
    assert [m.name for m in index.search("kailongbaozhuang", EVERYONE, 5)][:1] == ["东莞凯隆国际包装有限公司"]


def test_each_document_is_counted_once_with_the_sum_its_grams_would_get_over_the_whole_collection():
    import numpy as np

    from services.lookup import _sum_per_document

    rng = np.random.default_rng(7)
    postings = [np.sort(rng.choice(5_000, size, replace=False)).astype(np.int32) for size in (3, 40, 700, 2_500)]
    weights = np.repeat(np.array([2.5, 1.25, 0.5, 0.125], dtype=np.float32), [len(p) for p in postings])
    every = np.concatenate(postings)
    docs, sums = _sum_per_document(every, weights, 5_000)
    dense = np.bincount(every, weights=weights, minlength=5_000)
    assert sorted(docs.tolist()) == np.flatnonzero(dense).tolist()
    assert np.array_equal(sums, dense[docs])  # to the bit: the same additions in the same order


def test_a_typed_pinyin_with_a_typo_scores_each_candidate_once(index, monkeypatch):
    """Pinyin with a typo is looked up twice (its syllables, then its sounds) and most candidates come back
    in both rounds: each is scored once per lookup (the scoring was most of the slowest lookups' time)."""
    import services.lookup as lookup

    scored, rounds = [], []
    real_score, real_rank = lookup.score_document, lookup.LookupIndex._rank

    def counting_score(q, packed):
        scored.append(packed)
        return real_score(q, packed)

    def counting_rank(self, *args):
        rounds.append(1)
        return real_rank(self, *args)
    monkeypatch.setattr(lookup, "score_document", counting_score)
    monkeypatch.setattr(lookup.LookupIndex, "_rank", counting_rank)
    for query in ("dongjiabaozuang", "kailongjixie", "tianyibaozhuan", "huaxingmaoyii"):
        rounds.clear()
        scored.clear()
        index.search(query, EVERYONE, 5)
        if len(rounds) == 2:
            break
    assert len(rounds) == 2, "no query took the second round"
    assert scored and len(scored) == len(set(scored))
