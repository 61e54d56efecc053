"""The analyses as they were written before issue 18 vectorised them: plain Python over rows, one object per
customer. Kept as the reference the column versions in services.analytics must agree with exactly
(tests/test_report_columns.py); only the scoring itself comes from services.rfm (its one definition)."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date

import numpy as np

from services import rfm as rfm_rules
from services.analytics import (
    ActivityReport,
    Aggregate,
    ChurnRisk,
    Contact,
    CustomerInfo,
    KeyAccount,
    Performance,
    PerformanceReport,
    Period,
    Sale,
    Score,
    Share,
)
from services.rfm import SEGMENTS, visit_first


def aggregate(sales: Iterable[Sale], period: Period) -> dict[int, Aggregate]:
    last: dict[int, date] = {}
    count: Counter = Counter()
    amount: Counter = Counter()
    start, end = period.start, period.end
    for cid, day, cents in sales:
        if start <= day <= end:
            count[cid] += 1
            amount[cid] += cents
            if cid not in last or day > last[cid]:
                last[cid] = day
    return {cid: Aggregate(cid, last[cid], count[cid], amount[cid]) for cid in count}


def _scored(aggregates: dict[int, Aggregate], within: Iterable[int] | None = None) -> dict[int, Score]:
    """Scores and segments of every customer in the aggregates (numpy over the whole set at once), kept
    for the customers `within` (all when None)."""
    if not aggregates:
        return {}
    rows = list(aggregates.values())
    ids = [a.customer_id for a in rows]
    r, f, m, codes = rfm_rules.score_columns(np.array([a.last_day.toordinal() for a in rows], dtype=np.int64),
                                             np.array([a.count for a in rows], dtype=np.int64),
                                             np.array([a.amount_cents for a in rows], dtype=np.int64))
    scores = dict(zip(ids, map(Score._make, zip(r.tolist(), f.tolist(), m.tolist(),
                                                 map(SEGMENTS.__getitem__, codes.tolist())))))
    if within is not None:
        scores = {cid: scores[cid] for cid in within if cid in scores}
    return scores


@dataclass
class RfmReport:
    scores: dict[int, Score]
    previous: dict[int, Score]
    segments: Counter  # segment → customers now
    movement: Counter  # (segment before or "none", segment now or "none") → customers
    segments_before: Counter = field(default_factory=Counter)  # segment → customers at the previous period

    def moved(self) -> list[tuple[str, str, int]]:
        return sorted(((a, b, n) for (a, b), n in self.movement.items() if a != b), key=lambda x: (-x[2], x[0], x[1]))


def rfm_report(aggregates_now: dict[int, Aggregate], aggregates_before: dict[int, Aggregate],
               window: Period, previous_window: Period, within: Iterable[int] | None = None) -> RfmReport:
    """Scores now and at the previous period over everyone in the aggregates (the population), reported
    for the customers `within` (all when None)."""
    within = None if within is None else set(within)
    now, before = _scored(aggregates_now, within), _scored(aggregates_before, within)
    movement: Counter = Counter((before[cid].segment if cid in before else "none",
                                 now[cid].segment if cid in now else "none") for cid in now.keys() | before.keys())
    return RfmReport(now, before, Counter(s.segment for s in now.values()), movement,
                     Counter(s.segment for s in before.values()))


def churn_priority(report: RfmReport, aggregates_before: dict[int, Aggregate], limit: int = 20) -> list[ChurnRisk]:
    """Visit first (services.rfm.visit_first): customers valuable now or in the previous period and drifting
    away — including those who bought in the previous period and not at all in this one (scores 0) — the
    most valuable first (M, then what they spent in the previous period)."""
    gone = Score(0, 0, 0, "none")
    risks = [ChurnRisk(cid, before, report.scores.get(cid, gone), aggregates_before[cid].amount_cents)
             for cid, before in report.previous.items()
             if visit_first(report.scores.get(cid, gone), before)]
    risks += [ChurnRisk(cid, gone, score, 0) for cid, score in report.scores.items()
              if cid not in report.previous and visit_first(score)]
    risks.sort(key=lambda x: (-max(x.now.m, x.before.m), -x.amount_cents, x.customer_id))
    return risks[:limit]


def _ranks(totals: dict[int, int]) -> dict[int, int]:
    ordered = sorted(totals, key=lambda c: (-totals[c], c))
    return {c: i + 1 for i, c in enumerate(ordered)}


def key_accounts(sales: list[Sale], period: Period, share: float = 0.8) -> tuple[list[KeyAccount], int]:
    """The key accounts and the period's total amount."""
    now = {c: a.amount_cents for c, a in aggregate(sales, period).items()}
    prior = {c: a.amount_cents for c, a in aggregate(sales, period.year_before()).items()}
    total = sum(now.values())
    ranks, prior_ranks = _ranks(now), _ranks(prior)
    chosen, running = [], 0
    for cid in sorted(now, key=lambda c: ranks[c]):
        if total and running >= share * total:
            break
        running += now[cid]
        before = prior.get(cid, 0)
        chosen.append(KeyAccount(cid, now[cid], now[cid] / total if total else 0.0, before,
                                 (now[cid] - before) / before if before else None, ranks[cid], prior_ranks.get(cid)))
    return chosen, total


def distribution(customers: list[CustomerInfo], sales: list[Sale], period: Period,
                 key: Callable[[CustomerInfo], str | None]) -> list[Share]:
    by_customer = {c.id: key(c) for c in customers}
    count: Counter = Counter(by_customer.values())
    amount: Counter = Counter()
    start, end = period.start, period.end
    for cid, day, cents in sales:
        if start <= day <= end and cid in by_customer:
            amount[by_customer[cid]] += cents
    total_customers, total_amount = sum(count.values()), sum(amount.values())
    rows = [Share(label, count[label], count[label] / total_customers if total_customers else 0.0, amount[label],
                  amount[label] / total_amount if total_amount else 0.0) for label in set(count) | set(amount)]
    rows.sort(key=lambda s: (-s.amount_cents, -s.customers, s.label or ""))
    return rows


def sales_performance(sales: list[Sale], period: Period, *, by: Callable[[int], int | None] | None = None,
                      top: int = 5) -> PerformanceReport:
    """`by` maps a customer id to the key to group by (e.g. its owner); default: per customer."""
    now: Counter = Counter()
    prior: Counter = Counter()
    before = period.year_before()
    start, end, prior_start, prior_end = period.start, period.end, before.start, before.end
    for cid, day, cents in sales:
        k = by(cid) if by is not None else cid
        if start <= day <= end:
            now[k] += cents
        elif prior_start <= day <= prior_end:
            prior[k] += cents
    rows = [Performance(k, now[k], prior[k]) for k in set(now) | set(prior)]
    rows.sort(key=lambda p: (-p.total_cents, str(p.key)))
    growth = sorted((p for p in rows if p.change_cents > 0), key=lambda p: (-p.change_cents, str(p.key)))
    decline = sorted((p for p in rows if p.change_cents < 0), key=lambda p: (p.change_cents, str(p.key)))
    return PerformanceReport(rows, rows[:top], growth[:top], decline[:top])


def team_activity(contacts: list[Contact], customers: list[CustomerInfo], period: Period, as_of: date) -> ActivityReport:
    per_rep_week: dict[int | None, Counter] = defaultdict(Counter)
    reps_by_week: dict[tuple[int, tuple[int, int]], set[int]] = defaultdict(set)
    for contact in contacts:
        if contact.day in period:
            week = contact.day.isocalendar()[:2]
            per_rep_week[contact.user_id][week] += 1
            if contact.user_id is not None:
                reps_by_week[(contact.customer_id, week)].add(contact.user_id)
    within: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    for customer in customers:
        if customer.owner_id is None or not customer.cycle_days:
            continue
        within[customer.owner_id][1] += 1
        if customer.last_contact is not None and (as_of - customer.last_contact).days <= customer.cycle_days:
            within[customer.owner_id][0] += 1
    crowded = sorted(((cid, week, reps) for (cid, week), reps in reps_by_week.items() if len(reps) >= 2),
                     key=lambda x: (x[1], x[0]))
    return ActivityReport(dict(per_rep_week), {k: tuple(v) for k, v in within.items()}, crowded)


