"""The lookup over a generated base shaped like a real ERP's (near-duplicate families, repeated contact
names, mobiles sharing their last four digits, branches) and queries in every form reps type, each with
exactly one right answer (tests/lookup_world.py). bench/lookup_bench.py prints the same figures for the
full-size world beside two baselines."""

from __future__ import annotations

import pytest

from services.access import Viewer
from services.lookup import LookupIndex, confident
from tests.lookup_world import FORMS, documents, make_world, score_forms

EVERYONE = Viewer.everyone()


@pytest.fixture(scope="module")
def world():
    return make_world(seed=7, customers=2500, queries=1200)


async def test_every_form_reps_type_finds_the_one_right_customer(world):
    customers, contacts, queries = world
    docs, ids = documents(customers, contacts)
    index = await LookupIndex.from_documents(docs)

    def search(query: str) -> list[int]:
        matches = index.search(query, EVERYONE, 10)
        if not any(q.query == query and q.expected is None for q in absent):
            return [m.customer_id for m in matches]
        return [] if confident(matches) is None else [matches[0].customer_id]  # absent: nothing confident

    absent = [q for q in queries if q.form == "absent"]
    scores = score_forms(search, queries, ids)
    assert set(scores) == set(FORMS)
    top1 = sum(s[0] for f, s in scores.items() if f != "absent") / sum(s[2] for f, s in scores.items() if f != "absent")
    top3 = sum(s[1] for f, s in scores.items() if f != "absent") / sum(s[2] for f, s in scores.items() if f != "absent")
    report = {form: f"{s[0] / s[2]:.0%}" for form, s in scores.items()}
    assert top1 >= 0.96 and top3 >= 0.97, (top1, top3, report)
    assert scores["exact"][0] == scores["exact"][2], report  # the exact name is first, every time
    assert scores["absent"][0] == scores["absent"][2], report  # a firm that is not there never opens a card
    for form, (first, _three, total) in scores.items():
        assert first / total >= (0.8 if form == "pinyin_typo" else 0.95), (form, report)
