"""RFM: recency, frequency and monetary value scored 1–5 by quintile, the segment they make, on the card."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from sqlalchemy import select

from bot.formatting import day
from jobs.reminders import Runtime, score_rfm
from models import Customer
from services.customers import archive_customer, create_customer
from services.purchases import record_purchase
from services.rfm import quintile_scores, score_all, segment
from services.users import add_user
from tests.botkit import make_app, person, text_update

TODAY = date(2026, 11, 20)


def test_quintiles_score_the_best_fifth_5_and_ties_share_the_middle_of_their_ranks():
    assert quintile_scores([10, 20, 30, 40, 50]) == [1, 2, 3, 4, 5]
    assert quintile_scores(list(range(100)))[::20] == [1, 2, 3, 4, 5]
    assert quintile_scores(list(range(100))) == [1 + n // 20 for n in range(100)]  # exactly 20 each
    assert quintile_scores([7, 7, 7, 7]) == [3, 3, 3, 3]  # all equal: nobody better or worse than the middle
    assert quintile_scores([1, 5, 5, 5, 9]) == [1, 3, 3, 3, 5]
    assert quintile_scores([3, 9]) == [2, 4] and quintile_scores([4]) == [3]
    assert quintile_scores([]) == []


def test_ties_at_the_top_stay_at_the_top_and_ties_at_the_bottom_at_the_bottom():
    # Five customers who all bought yesterday, among a hundred buyers: all R5, none "lost".
    days = [100 + n for n in range(95)] + [1000] * 5  # the day's ordinal: later is higher
    assert quintile_scores(days)[-5:] == [5] * 5
    # Sixty one-time buyers of a hundred: they share F2 (the middle of the bottom 60 %), not F1 or F3.
    counts = [1] * 60 + [2] * 20 + [3] * 10 + [5] * 10
    scores = quintile_scores(counts)
    assert set(scores[:60]) == {2} and set(scores[60:80]) == {4} and set(scores[80:]) == {5}
    # Segments: the five who bought yesterday once each, alone in a new company, are new buyers.
    assert segment(3, 3, 3, purchases=1) == "potential" and segment(5, 2, 2, purchases=1) == "new"
    # When 80 % bought once they share F3; lapsed, they are not "at risk" (valuable) for that alone.
    assert quintile_scores([1] * 80 + [2] * 20)[0] == 3
    assert segment(1, 3, 1, purchases=1) == "lost" and segment(1, 3, 1, purchases=2) == "at_risk"


def test_segments_name_what_to_do():
    assert segment(5, 5, 5, 12) == "champions"
    assert segment(1, 4, 5, 8) == "cant_lose"
    assert segment(2, 1, 4, 1) == "at_risk" and segment(1, 3, 1, 2) == "at_risk"
    assert segment(3, 4, 2, 6) == "loyal"
    assert segment(5, 1, 1, 1) == "new" and segment(4, 2, 1, 1) == "new"
    assert segment(5, 2, 1, 2) == "potential"  # new means one purchase in the window, whatever F says
    assert segment(3, 2, 2, 2) == "potential"
    assert segment(2, 1, 1, 1) == "hibernating"
    assert segment(1, 1, 1, 1) == "lost"


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
    customers = list((await session.execute(select(Customer).execution_options(populate_existing=True))).scalars())
    scores = {c.name: (c.rfm_r, c.rfm_f, c.rfm_m) for c in customers}
    segments = {c.name: c.rfm_segment for c in customers}
    # The window is the 365 days to yesterday: 流失大户's purchase 400 days ago is outside it (3 in it).
    assert scores == {"常客大户": (4, 5, 5), "流失大户": (1, 4, 4), "新客户": (5, 2, 2), "小客户": (2, 2, 1),
                      "中等客户": (3, 3, 3), "从未购买": (None, None, None), "已归档": (None, None, None)}
    assert segments == {"常客大户": "champions", "流失大户": "cant_lose", "新客户": "new", "小客户": "hibernating",
                        "中等客户": "potential", "从未购买": None, "已归档": None}
    assert {c.rfm_scored_on for c in customers if c.rfm_r} == {TODAY - timedelta(days=1)}
    # A later run re-scores; a customer archived since loses its scores.
    await archive_customer(session, small.id)
    assert await score_all(session, TODAY + timedelta(days=1)) == 4
    assert await score_all(session, TODAY + timedelta(days=1), again=False) == 0  # already of that day
    fresh = {c.id: c for c in (await session.execute(
        select(Customer).execution_options(populate_existing=True))).scalars()}
    assert fresh[small.id].rfm_r is None and fresh[big.id].rfm_scored_on == TODAY
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
    yesterday = (datetime.now(UTC) + timedelta(hours=8)).date() - timedelta(days=1)  # the company's calendar
    assert f"RFM: R5 F5 M5 · champions (the 365 days to {day(yesterday, 'en')})" in card.text


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

    combos = list(itertools.product(range(1, 6), range(1, 6), range(1, 6), (1, 2)))
    r, f, m, n = (np.array(column) for column in zip(*combos))
    assert [SEGMENTS[code] for code in segment_codes(r, f, m, n)] == [segment(*c) for c in combos]


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


async def _company(session, today: date):
    """Two teams of two reps, 60 buyers of every shape (seeded, so the same every run)."""
    import random

    from models import Role

    rng = random.Random(15)
    bosses = [await add_user(session, name=f"经理{n}", role=Role.manager, telegram_id=8300 + n) for n in range(2)]
    reps = [await add_user(session, name=f"业务员{n}", telegram_id=8310 + n, manager_id=bosses[n // 2].id)
            for n in range(4)]
    customers = []
    for n in range(60):
        c = await create_customer(session, name=f"客户{n:02d}", owner_id=reps[n % 4].id)
        # Team 0's customers buy more and more recently than team 1's: re-scoring within a team would move
        # their scores, one company-wide ranking does not.
        rich = n % 4 < 2
        for _ in range(rng.randint(1, 12 if rich else 3)):
            await record_purchase(session, customer_id=c.id, amount_cents=rng.randint(10, 500) * (1000 if rich else 100),
                                  purchased_on=today - timedelta(days=rng.randint(1, 200 if rich else 400)), today=today)
        customers.append(c)
    return bosses, reps, customers


async def test_one_rfm_the_card_a_team_report_and_a_reps_report_agree_on_every_customer(session):
    from services.access import Viewer, viewer_for
    from services.reports import build

    bosses, reps, _customers = await _company(session, TODAY)
    scored = await score_all(session, TODAY)
    cards = {c.id: (c.rfm_r, c.rfm_f, c.rfm_m, c.rfm_segment) for c in (await session.execute(
        select(Customer).where(Customer.rfm_r.is_not(None)).execution_options(populate_existing=True))).scalars()}
    assert len(cards) == scored > 40
    everyone = await build(session, Viewer.everyone(), kind="week", today=TODAY)
    assert everyone.rfm_window.end == TODAY - timedelta(days=1) and everyone.rfm_window.days == 365
    assert {cid: tuple(s) for cid, s in everyone.rfm.scores.items()} == cards
    for viewer_user in (*bosses, *reps):
        report = await build(session, await viewer_for(session, viewer_user), kind="month", today=TODAY)
        mine = {cid: card for cid, card in cards.items() if cid in report.customers}
        assert mine and {cid: tuple(s) for cid, s in report.rfm.scores.items()} == mine, viewer_user.name
        assert report.rfm.segments.total() == len(mine)
    # Team 0 buys more: ranked among everybody its customers hold most of the top scores; re-ranked within the
    # team (the old way) half of them would have been pulled down.
    team0 = await build(session, await viewer_for(session, bosses[0]), kind="week", today=TODAY)
    assert sum(s.m >= 4 for s in team0.rfm.scores.values()) > len(team0.rfm.scores) * 0.6


async def test_a_window_other_than_365_days_rescores_and_says_so(engine):
    from bot.callbacks import ReportCallback
    from tests.botkit import button_update

    app = await make_app(engine)
    async with app.sessions() as session:
        bosses, _reps, _customers = await _company(session, datetime.now(UTC).date())
        bosses[0].language = "en"
        await session.commit()
    boss = person(8300, language="en")
    [default] = (await app.send(button_update(boss, ReportCallback(period="week", show="rfm").pack()))).sent()
    yesterday = (datetime.now(UTC) + timedelta(hours=8)).date() - timedelta(days=1)
    assert f"over the 365 days to {yesterday.isoformat()}, as the customer cards do" in default.text
    assert "Re-scored" not in default.text
    [short] = (await app.send(button_update(boss, ReportCallback(period="week", show="rfm", window=90).pack()))).sent()
    assert "Re-scored over these 90 days for this report: the customer cards use the last 365 days." in short.text
