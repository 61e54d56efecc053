"""Each analysis against small fixtures whose right answer is obvious by hand, plus the edge cases."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, timedelta

import pytest

from services.analytics import (
    Aggregate,
    Contact,
    CustomerInfo,
    FeedbackInfo,
    Period,
    Sale,
    aggregate,
    churn_priority,
    complaints,
    distribution,
    key_accounts,
    rfm,
    rfm_report,
    sales_performance,
    satisfaction,
    team_activity,
)

YEAR = Period(date(2026, 1, 1), date(2026, 12, 31))


def test_rfm_scores_and_segments_by_hand():
    as_of = date(2026, 6, 30)
    aggs = {
        1: Aggregate(1, date(2026, 6, 29), 10, 10_000_00),  # recent, frequent, big
        2: Aggregate(2, date(2026, 6, 20), 6, 5_000_00),
        3: Aggregate(3, date(2026, 5, 1), 3, 2_000_00),
        4: Aggregate(4, date(2026, 2, 1), 8, 9_000_00),  # big and frequent but quiet for months
        5: Aggregate(5, date(2026, 6, 28), 1, 100_00),  # one recent purchase
    }
    scores = rfm(aggs, as_of)
    assert (scores[1].r, scores[1].f, scores[1].m) == (5, 5, 5) and scores[1].segment == "champions"
    assert (scores[4].r, scores[4].f, scores[4].m) == (1, 4, 4) and scores[4].segment == "cant_lose"
    assert (scores[5].r, scores[5].f) == (4, 1) and scores[5].segment == "new"
    assert scores[3].segment == "hibernating"  # R 2, F 2, M 2


def test_rfm_edge_cases_no_purchases_one_customer_and_ties():
    assert rfm({}, date(2026, 1, 1)) == {}
    [only] = rfm({7: Aggregate(7, date(2026, 1, 1), 1, 100)}, date(2026, 1, 1)).values()
    assert (only.r, only.f, only.m) == (3, 3, 3)  # alone: neither better nor worse than the middle
    tied = rfm({i: Aggregate(i, date(2026, 1, 1), 2, 500) for i in range(10)}, date(2026, 1, 2))
    assert {(s.r, s.f, s.m) for s in tied.values()} == {(3, 3, 3)}  # ties never split across scores


def test_rfm_movement_and_the_churn_priority_list():
    before = {1: Aggregate(1, date(2026, 3, 30), 9, 900_00), 2: Aggregate(2, date(2026, 3, 29), 5, 500_00),
              3: Aggregate(3, date(2026, 1, 5), 1, 10_00), 4: Aggregate(4, date(2026, 3, 1), 3, 5_000_00),
              5: Aggregate(5, date(2026, 2, 1), 2, 100_00)}
    now = {1: Aggregate(1, date(2026, 4, 2), 2, 200_00), 2: Aggregate(2, date(2026, 6, 29), 7, 700_00),
           3: Aggregate(3, date(2026, 6, 30), 4, 400_00), 4: Aggregate(4, date(2026, 6, 1), 2, 300_00),
           6: Aggregate(6, date(2026, 6, 30), 1, 50_00)}
    window, previous = Period(date(2026, 4, 1), date(2026, 6, 30)), Period(date(2026, 1, 1), date(2026, 3, 31))
    report = rfm_report(now, before, window, previous)
    assert report.movement[("none", report.scores[6].segment)] == 1  # a new buyer
    assert report.movement[(report.previous[5].segment, "none")] == 1  # stopped buying
    assert sum(report.movement.values()) == 6
    assert report.segments_before == Counter(s.segment for s in report.previous.values())
    assert report.segments_before.total() == 5 and report.segments.total() == 5
    risks = churn_priority(report, before)
    # R before: 1→5, 2→4, 3→1, 4→3; now: 1→1, 2→3, 3→4, 4→2. M before: 4→5, 1→4, 2→3, 5→2, 3→1.
    # Valuable and drifting: 4 (M 5, R now 2) and 1 (M 4, R 5→1); 2 only slipped from 4 to 3 (not drifting),
    # 5 stopped buying but was never valuable. The most valuable first: 4, then 1.
    assert [r.customer_id for r in risks] == [4, 1]
    assert risks[0].amount_cents == 5_000_00 and risks[1].before.r > risks[1].now.r


def test_key_accounts_are_the_smallest_set_making_80_percent():
    sales = [Sale(1, date(2026, 3, 1), 500), Sale(2, date(2026, 3, 1), 300), Sale(3, date(2026, 3, 1), 100),
             Sale(4, date(2026, 3, 1), 60), Sale(5, date(2026, 3, 1), 40),
             Sale(1, date(2025, 3, 1), 100), Sale(2, date(2025, 3, 1), 600)]
    accounts, total = key_accounts(sales, YEAR)
    assert total == 1000 and [a.customer_id for a in accounts] == [1, 2]  # 500 + 300 = 80%
    first, second = accounts
    assert (first.share, first.prior_cents, first.change, first.rank, first.prior_rank) == (0.5, 100, 4.0, 1, 2)
    assert first.rank_change == 1 and second.rank_change == -1 and second.change == -0.5
    assert key_accounts([], YEAR) == ([], 0)
    [alone], _ = key_accounts([Sale(9, date(2026, 1, 1), 5)], YEAR)
    assert (alone.share, alone.change, alone.prior_rank) == (1.0, None, None)


def test_distribution_by_region_counts_customers_and_amounts():
    customers = [CustomerInfo(1, "a", region="华南"), CustomerInfo(2, "b", region="华南"),
                 CustomerInfo(3, "c", region="华东"), CustomerInfo(4, "d", region=None)]
    sales = [Sale(1, date(2026, 2, 1), 300), Sale(3, date(2026, 2, 1), 600), Sale(3, date(2025, 2, 1), 999)]
    rows = {r.label: r for r in distribution(customers, sales, YEAR, lambda c: c.region)}
    assert (rows["华南"].customers, rows["华南"].customer_share, rows["华南"].amount_cents) == (2, 0.5, 300)
    assert rows["华东"].amount_share == 600 / 900 and rows[None].customers == 1 and rows[None].amount_cents == 0


def test_sales_performance_year_over_year_and_extremes():
    sales = [Sale(1, date(2026, 5, 1), 1000), Sale(1, date(2025, 5, 1), 400), Sale(2, date(2026, 5, 1), 200),
             Sale(2, date(2025, 5, 1), 900), Sale(3, date(2025, 5, 1), 300)]
    report = sales_performance(sales, YEAR)
    assert [p.key for p in report.top_total] == [1, 2, 3]
    assert [(p.key, p.change_cents) for p in report.top_growth] == [(1, 600)]
    assert [(p.key, p.change_cents) for p in report.top_decline] == [(2, -700), (3, -300)]
    assert report.top_total[0].change == 1.5
    owners = {1: 10, 2: 10, 3: 20}
    by_rep = {p.key: p for p in sales_performance(sales, YEAR, by=owners.get).rows}
    assert (by_rep[10].total_cents, by_rep[10].prior_cents, by_rep[20].change) == (1200, 1300, -1.0)


def _fb(id, customer, kind="complaint", product="打印机", rating=None, status="open", day=1, hours=None, user=7):
    created = datetime(2026, 3, day, 9, tzinfo=UTC)
    return FeedbackInfo(id, customer, kind, product, rating, status, created,
                        created + timedelta(hours=hours) if hours is not None else None, user)


def test_complaints_by_type_product_rep_region_and_time_to_resolve():
    customers = {1: CustomerInfo(1, "a", owner_id=10, region="华南"), 2: CustomerInfo(2, "b", owner_id=20, region="华东")}
    feedback = [_fb(1, 1, status="resolved", hours=4), _fb(2, 1, status="resolved", hours=10, day=2),
                _fb(3, 2, product="耗材", status="resolved", hours=30, day=3), _fb(4, 2, day=5),
                _fb(5, 2, day=4), _fb(6, 1, kind="praise", rating=5)]
    report = complaints(feedback, customers, YEAR)
    assert report.by_kind == {"complaint": 5, "praise": 1}
    assert report.by_product == {"打印机": 4, "耗材": 1} and report.by_rep == {10: 2, 20: 3}
    assert report.by_region == {"华南": 2, "华东": 3}
    assert (report.open, report.resolved, report.median_hours_to_resolve) == (2, 3, 10.0)
    assert report.oldest_open.id == 5
    empty = complaints([], customers, YEAR)
    assert (empty.open, empty.median_hours_to_resolve, empty.oldest_open) == (0, None, None)


def test_team_activity_weekly_counts_cycle_share_and_crowding():
    monday = date(2026, 3, 2)
    contacts = [Contact(1, 10, monday), Contact(1, 20, monday + timedelta(days=2)),  # two reps, same week
                Contact(2, 10, monday + timedelta(days=7)), Contact(2, 10, monday + timedelta(days=8))]
    customers = [CustomerInfo(1, "a", owner_id=10, cycle_days=7, last_contact=monday + timedelta(days=2)),
                 CustomerInfo(2, "b", owner_id=10, cycle_days=7, last_contact=monday + timedelta(days=8)),
                 CustomerInfo(3, "c", owner_id=10, cycle_days=30, last_contact=None),
                 CustomerInfo(4, "d", owner_id=20, cycle_days=None)]
    report = team_activity(contacts, customers, YEAR, as_of=monday + timedelta(days=10))
    assert report.per_rep_week[10] == {(2026, 10): 1, (2026, 11): 2} and report.per_rep_week[20] == {(2026, 10): 1}
    assert report.within_cycle[10] == (1, 3)  # only customer 2 was contacted within 7 days of the 12th
    assert report.within_cycle_share(20) is None
    assert report.crowded == [(1, (2026, 10), {10, 20})]


def test_satisfaction_most_and_least_satisfied_fifth():
    customers = {i: CustomerInfo(i, str(i), region="华南" if i <= 5 else "华东") for i in range(1, 11)}
    feedback = [_fb(i, i, kind="praise", rating=1 + i % 5, product="打印机" if i % 2 else "耗材") for i in range(1, 11)]
    report = satisfaction(feedback, customers, YEAR)
    assert report.most == [(4, 5.0), (9, 5.0)] and report.least == [(5, 1.0), (10, 1.0)]
    assert report.by_product == {"打印机": 3.0, "耗材": 3.0} and report.by_region == {"华南": 3.0, "华东": 3.0}
    assert satisfaction([], customers, YEAR).most == []


def test_aggregate_keeps_only_the_window():
    aggs = aggregate([Sale(1, date(2026, 1, 1), 5), Sale(1, date(2026, 2, 1), 7), Sale(1, date(2025, 1, 1), 100)],
                     YEAR)
    assert aggs == {1: Aggregate(1, date(2026, 2, 1), 2, 12)}


@pytest.mark.parametrize("start, end, expected", [
    (date(2028, 2, 26), date(2028, 3, 3), (date(2027, 2, 25), date(2027, 3, 3))),  # 7 days with 29 Feb → 7
    (date(2029, 2, 26), date(2029, 3, 4), (date(2028, 2, 27), date(2028, 3, 4))),  # a year back holds 29 Feb
    (date(2028, 2, 1), date(2028, 2, 29), (date(2027, 2, 1), date(2027, 2, 28))),  # February vs February
    (date(2029, 2, 1), date(2029, 2, 28), (date(2028, 2, 1), date(2028, 2, 29))),
    (date(2026, 1, 1), date(2026, 3, 31), (date(2025, 1, 1), date(2025, 3, 31))),  # a quarter
    (date(2026, 11, 24), date(2026, 11, 30), (date(2025, 11, 24), date(2025, 11, 30))),
])
def test_a_period_is_compared_with_a_year_earlier_of_the_same_kind(start, end, expected):
    from services.analytics import Period

    before = Period(start, end).year_before()
    assert (before.start, before.end) == expected
    if start.day != 1:
        assert before.days == Period(start, end).days


def test_a_reports_complaint_figures_are_about_its_period_and_never_contradict():
    customers = {1: CustomerInfo(1, "a", owner_id=10), 2: CustomerInfo(2, "b", owner_id=10)}
    week = Period(date(2026, 3, 2), date(2026, 3, 8))
    feedback = [_fb(1, 1, status="resolved", hours=5, day=3),  # raised and resolved in the week
                _fb(2, 2, day=20),  # raised after the week, still open: not "oldest open … since today"
                _fb(3, 1, day=1)]  # raised before the week, still open: the backlog's oldest
    report = complaints(feedback, customers, week)
    assert (report.by_kind["complaint"], report.open, report.open_total) == (1, 0, 1)
    assert report.oldest_open.id == 3


def test_nobody_is_both_the_most_and_the_least_satisfied():
    from services.analytics import satisfaction

    customers = {n: CustomerInfo(n, str(n)) for n in range(1, 11)}
    one = satisfaction([_fb(1, 1, kind="praise", rating=5)], customers, YEAR)
    assert (one.most, one.least) == ([(1, 5.0)], [])
    tied = satisfaction([_fb(1, 1, kind="praise", rating=4), _fb(2, 2, kind="praise", rating=4)], customers, YEAR)
    assert tied.least == []
    many = satisfaction([_fb(n, n, kind="praise", rating=1 + n % 5) for n in range(1, 11)], customers, YEAR)
    assert {c for c, _ in many.most}.isdisjoint({c for c, _ in many.least})
    assert min(r for _, r in many.most) > max(r for _, r in many.least)


def test_visit_first_lists_valuable_customers_drifting_away_and_never_a_champion():
    from services.analytics import Score

    window, previous = Period(date(2026, 4, 1), date(2026, 6, 30)), Period(date(2026, 1, 1), date(2026, 3, 31))
    before, now = {}, {}
    # Twenty ordinary customers buying the same little, now and before (they fill the quintiles).
    for n in range(10, 30):
        before[n] = Aggregate(n, date(2026, 3, 1 + n % 20), 2, 100_00)
        now[n] = Aggregate(n, date(2026, 6, 1 + n % 20), 2, 100_00)
    # 1: a champion — bought 7 days ago, 19 purchases, the biggest spender: never "visit first".
    before[1] = Aggregate(1, date(2026, 3, 28), 15, 90_000_00)
    now[1] = Aggregate(1, date(2026, 6, 23), 19, 95_000_00)
    # 2: a big account that went quiet: bought a lot before, once at the start of this window.
    before[2] = Aggregate(2, date(2026, 3, 30), 12, 80_000_00)
    now[2] = Aggregate(2, date(2026, 4, 2), 1, 1_000_00)
    # 3: a big account that stopped buying altogether.
    before[3] = Aggregate(3, date(2026, 3, 25), 10, 70_000_00)
    # 4: a small customer that went quiet: drifting, but not valuable.
    before[4] = Aggregate(4, date(2026, 3, 30), 1, 10_00)
    now[4] = Aggregate(4, date(2026, 4, 1), 1, 10_00)
    report = rfm_report(now, before, window, previous)
    risks = churn_priority(report, before)
    assert [r.customer_id for r in risks] == [2, 3]
    assert risks[1].now == Score(0, 0, 0, "none")  # no purchase in the window at all
