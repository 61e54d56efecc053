"""RFM: recency, frequency and monetary value scored 1–5 by quintile, the segment they make, on the card."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from sqlalchemy import select

from jobs.reminders import Runtime, score_rfm
from models import Customer
from services.customers import archive_customer, create_customer
from services.purchases import record_purchase
from services.rfm import quintile_scores, score_all, segment
from services.users import add_user
from tests.botkit import make_app, person, text_update

TODAY = date(2026, 11, 20)


def test_quintiles_score_the_best_fifth_5_and_never_split_ties():
    assert quintile_scores([10, 20, 30, 40, 50]) == [1, 2, 3, 4, 5]
    assert quintile_scores(list(range(100)))[::20] == [1, 2, 3, 4, 5]
    assert quintile_scores([7, 7, 7, 7]) == [1, 1, 1, 1]
    assert quintile_scores([1, 5, 5, 5, 9]) == [1, 2, 2, 2, 5]
    assert quintile_scores([]) == []


def test_segments_name_what_to_do():
    assert segment(5, 5, 5) == "champions"
    assert segment(1, 4, 5) == "cant_lose"
    assert segment(2, 1, 4) == "at_risk" and segment(1, 3, 1) == "at_risk"
    assert segment(3, 4, 2) == "loyal"
    assert segment(5, 1, 1) == "new"
    assert segment(3, 2, 2) == "potential"
    assert segment(2, 1, 1) == "hibernating"
    assert segment(1, 1, 1) == "lost"


async def _buyer(session, name: str, days_ago: list[int], amount: int) -> Customer:
    customer = await create_customer(session, name=name)
    for days in days_ago:
        await record_purchase(session, customer_id=customer.id, purchased_on=TODAY - timedelta(days=days),
                              amount_cents=amount, today=TODAY)
    return customer


async def test_scores_rank_customers_and_skip_those_without_purchases(session):
    big = await _buyer(session, "常客大户", [3, 30, 60, 90, 120], 500_000)
    drifting = await _buyer(session, "流失大户", [300, 330, 360, 400], 800_000)
    newbie = await _buyer(session, "新客户", [1], 10_000)
    small = await _buyer(session, "小客户", [200], 5_000)
    middle = await _buyer(session, "中等客户", [40, 80], 100_000)
    never = await create_customer(session, name="从未购买")
    gone = await _buyer(session, "已归档", [5], 1_000)
    await archive_customer(session, gone.id)
    assert await score_all(session, TODAY) == 5
    scores = {c.name: (c.rfm_r, c.rfm_f, c.rfm_m) for c in (await session.execute(
        select(Customer).execution_options(populate_existing=True))).scalars()}
    assert scores["常客大户"] == (4, 5, 4) and segment(*scores["常客大户"]) == "champions"
    assert segment(*scores["流失大户"]) == "cant_lose"
    assert scores["新客户"][0] == 5 and segment(*scores["新客户"]) == "new"
    assert segment(*scores["小客户"]) == "hibernating"
    assert scores["从未购买"] == (None, None, None) and scores["已归档"] == (None, None, None)
    # A later run re-scores; a customer archived since loses its scores.
    await archive_customer(session, small.id)
    assert await score_all(session, TODAY + timedelta(days=1)) == 4
    fresh = {c.id: c for c in (await session.execute(
        select(Customer).execution_options(populate_existing=True))).scalars()}
    assert fresh[small.id].rfm_r is None and fresh[big.id].rfm_scored_on == TODAY + timedelta(days=1)
    assert never and middle and drifting and newbie


async def test_the_daily_job_scores_and_the_card_shows_the_segment(engine):
    app = await make_app(engine)
    async with app.sessions() as session:
        rep = await add_user(session, name="Lee", telegram_id=8100, language="en")
        customer = await _buyer(session, "常客大户", [3, 30, 60, 90, 120], 500_000)
        customer.owner_id = rep.id
        for n in range(4):
            await _buyer(session, f"其他客户{n}", [100 + 50 * n], 1000)
        await session.commit()
    await app.sync()
    assert await score_rfm(Runtime(app.sessions)) == 5
    [card] = (await app.send(text_update(person(8100, language="en"), "常客大户"))).sent()
    assert "RFM: R5 F5 M5 · champions" in card.text


async def test_a_rep_sees_their_own_slice_in_today(engine):
    app = await make_app(engine)
    async with app.sessions() as session:
        rep = await add_user(session, name="Lee", telegram_id=8200, language="en")
        drifting = await _buyer(session, "流失大户", [300, 330, 360, 400], 800_000)
        drifting.owner_id = rep.id
        fresh = await _buyer(session, "新客户", [1], 10_000)
        fresh.owner_id = rep.id
        for n in range(3):
            await _buyer(session, f"别人的客户{n}", [10 * n + 5, 50], 50_000)
        await session.commit()
    await score_rfm(Runtime(app.sessions, clock=lambda: datetime.combine(TODAY, datetime.min.time(), UTC)))
    [agenda] = (await app.send(text_update(person(8200, language="en"), "/today"))).sent()
    assert "Your customers by RFM:" in agenda.text and "new buyer 1" in agenda.text
    assert "Visit first (high value, slipping): 流失大户" in agenda.text and "别人的客户" not in agenda.text


def test_segments_of_many_customers_at_once_follow_the_same_rules():
    import itertools

    import numpy as np

    from services.rfm import SEGMENTS, segment, segment_codes

    combos = list(itertools.product(range(1, 6), repeat=3))
    r, f, m = (np.array(column) for column in zip(*combos))
    assert [SEGMENTS[code] for code in segment_codes(r, f, m)] == [segment(*c) for c in combos]


async def test_the_reps_visit_first_list_uses_the_same_rule(session):
    from sqlalchemy import update as sql_update

    from models import Customer
    from services.customers import create_customer
    from services.rfm import my_slice
    from services.users import add_user

    rep = await add_user(session, name="Lee", telegram_id=9901)
    scores = {"冠军客户": (5, 5, 5), "大客户久未下单": (1, 4, 5), "中客户变冷": (2, 3, 4), "小客户": (1, 1, 1),
              "新客户": (5, 1, 2)}
    for name, (r, f, m) in scores.items():
        c = await create_customer(session, name=name, owner_id=rep.id)
        await session.execute(sql_update(Customer).where(Customer.id == c.id).values(rfm_r=r, rfm_f=f, rfm_m=m))
    _counts, first = await my_slice(session, rep.id)
    assert [c.name for c in first] == ["大客户久未下单", "中客户变冷"]
