"""Customer analyses for managers. Each analysis is a function on plain data (rows the
loaders in services.reports read from the database, or hand-made fixtures in tests).

Rules, per analysis:
- RFM over a window: services.rfm's one definition (population, quintiles, tie rule, segments); the
  scores are made over the whole population given and then kept for the customers looked at (a team's
  report shows company-wide scores). Movement: each customer's segment at the end of the previous
  period (the same window, shifted back one period) → now; a customer not scored then is "none".
- Visit first (churn risk): services.rfm.visit_first, the most valuable first.
- Key accounts (80/20): customers ranked by amount in the period; the smallest top set whose amount
  reaches 80% of the period's total; each with total, share, the same period a year earlier, change,
  rank and rank change (rank then among all buyers of that period; None when they did not buy).
- Distribution: customers and amounts by a dimension (region, scale, nature, industry), with shares;
  a missing value is its own group.
- Sales performance: per customer or per rep (the customer's owner), period vs the same period a year
  earlier; extremes: top total, top growth and top decline (by amount change).
- Complaints: by kind of feedback, product, rep, region; open vs resolved; median hours to resolve
  (resolved ones), the oldest open complaint.
- Team activity (contact evaluation): interactions per rep per ISO week; per rep, the share of their
  customers with a contact strategy that were contacted within its cycle as of the day; customers
  contacted by two or more different reps in the same ISO week.
- Satisfaction: average rating by product and by region; customers ranked by their average rating, the
  top 20% and bottom 20% (at least one each when anyone was rated).
"""

from __future__ import annotations

import math
import statistics
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import NamedTuple

from services import rfm as rfm_rules
from services.rfm import SEGMENTS, visit_first

# ---------------------------------------------------------------------------------------------- plain data


class Sale(NamedTuple):
    customer_id: int
    day: date
    amount_cents: int


class CustomerInfo(NamedTuple):
    id: int
    name: str
    owner_id: int | None = None
    region: str | None = None
    scale: str | None = None
    nature: str | None = None
    industry: str | None = None
    cycle_days: int | None = None  # contact strategy
    last_contact: date | None = None
    code: str | None = None  # the ERP's customer code (客户编号)


class Contact(NamedTuple):
    customer_id: int
    user_id: int | None
    day: date


class FeedbackInfo(NamedTuple):
    id: int
    customer_id: int
    kind: str
    product: str | None
    rating: int | None
    status: str
    created_at: datetime
    resolved_at: datetime | None
    user_id: int | None


@dataclass(frozen=True)
class Period:
    start: date  # inclusive
    end: date  # inclusive

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def year_before(self) -> Period:
        """Rule "compare like with like": whole calendar months (a month, a quarter, a year) compare with
        the same months a year earlier; any other period (a week) with as many days ending on the same
        date a year earlier, so a week around 29 February is compared with 7 days, not 6 or 8."""
        if self.start.day == 1 and (self.end + timedelta(days=1)).day == 1:
            start = _year_back(self.start)
            end = _year_back(self.end + timedelta(days=1)) - timedelta(days=1)
            return Period(start, end)
        end = _year_back(self.end)
        return Period(end - timedelta(days=self.days - 1), end)

    def previous(self) -> Period:
        return Period(self.start - timedelta(days=self.days), self.start - timedelta(days=1))

    def __contains__(self, day: date) -> bool:
        return self.start <= day <= self.end


def _year_back(day: date) -> date:
    try:
        return day.replace(year=day.year - 1)
    except ValueError:  # 29 Feb
        return day.replace(year=day.year - 1, day=28)


class Aggregate(NamedTuple):
    """One customer's purchases within a window."""

    customer_id: int
    last_day: date
    count: int
    amount_cents: int


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


# ---------------------------------------------------------------------------------------------- RFM


class Score(NamedTuple):
    r: int
    f: int
    m: int
    segment: str = ""


def rfm(aggregates: dict[int, Aggregate], as_of: date) -> dict[int, Score]:
    return _scored(aggregates)


def _scored(aggregates: dict[int, Aggregate], within: Iterable[int] | None = None) -> dict[int, Score]:
    """Scores and segments of every customer in the aggregates (numpy over the whole set at once), kept
    for the customers `within` (all when None)."""
    if not aggregates:
        return {}
    ids, r, f, m, codes = rfm_rules.score((a.customer_id, a.last_day, a.count, a.amount_cents)
                                          for a in aggregates.values())
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


@dataclass(frozen=True)
class ChurnRisk:
    customer_id: int
    before: Score
    now: Score
    amount_cents: int  # in the previous window


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


# ---------------------------------------------------------------------------------------------- 80/20


@dataclass(frozen=True)
class KeyAccount:
    customer_id: int
    total_cents: int
    share: float
    prior_cents: int
    change: float | None  # ratio vs a year earlier; None when they bought nothing then
    rank: int
    prior_rank: int | None

    @property
    def rank_change(self) -> int | None:
        return None if self.prior_rank is None else self.prior_rank - self.rank  # positive = climbed


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


# ---------------------------------------------------------------------------------------------- distribution


@dataclass(frozen=True)
class Share:
    label: str | None
    customers: int
    customer_share: float
    amount_cents: int
    amount_share: float


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


# ---------------------------------------------------------------------------------------------- performance


@dataclass(frozen=True)
class Performance:
    key: int | None  # customer id, or rep (owner) id
    total_cents: int
    prior_cents: int

    @property
    def change_cents(self) -> int:
        return self.total_cents - self.prior_cents

    @property
    def change(self) -> float | None:
        return self.change_cents / self.prior_cents if self.prior_cents else None


@dataclass
class PerformanceReport:
    rows: list[Performance]
    top_total: list[Performance] = field(default_factory=list)
    top_growth: list[Performance] = field(default_factory=list)
    top_decline: list[Performance] = field(default_factory=list)


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


# ---------------------------------------------------------------------------------------------- complaints


@dataclass
class ComplaintReport:
    by_kind: Counter
    by_product: Counter
    by_rep: Counter
    by_region: Counter
    open: int  # raised in the period and still open
    resolved: int
    median_hours_to_resolve: float | None
    oldest_open: FeedbackInfo | None  # of all raised up to the period's end and still open
    open_total: int = 0  # raised up to the period's end (in it or before) and still open


def complaints(feedback: list[FeedbackInfo], customers: dict[int, CustomerInfo], period: Period) -> ComplaintReport:
    inside = [f for f in feedback if f.created_at.date() in period]
    complaints_ = [f for f in inside if f.kind == "complaint"]
    hours = [(f.resolved_at - f.created_at).total_seconds() / 3600 for f in complaints_
             if f.status == "resolved" and f.resolved_at is not None]
    # Open ones raised after the period's end belong to the next period: never "oldest open … since today"
    # in a report about last week.
    open_ = [f for f in feedback if f.kind == "complaint" and f.status == "open" and f.created_at.date() <= period.end]
    region = Counter(customers[f.customer_id].region if f.customer_id in customers else None for f in complaints_)
    return ComplaintReport(
        by_kind=Counter(f.kind for f in inside),
        by_product=Counter(f.product for f in complaints_),
        by_rep=Counter(customers[f.customer_id].owner_id if f.customer_id in customers else None for f in complaints_),
        by_region=region,
        open=sum(1 for f in complaints_ if f.status == "open"),
        resolved=sum(1 for f in complaints_ if f.status == "resolved"),
        median_hours_to_resolve=statistics.median(hours) if hours else None,
        oldest_open=min(open_, key=lambda f: (f.created_at, f.id)) if open_ else None,
        open_total=len(open_),
    )


# ---------------------------------------------------------------------------------------------- team activity


@dataclass
class ActivityReport:
    per_rep_week: dict[int | None, Counter]  # rep → (iso year, iso week) → interactions
    within_cycle: dict[int, tuple[int, int]]  # rep → (customers contacted within their cycle, with a cycle)
    crowded: list[tuple[int, tuple[int, int], set[int]]]  # (customer, iso week, reps) contacted by 2+ reps

    def within_cycle_share(self, rep: int) -> float | None:
        done, total = self.within_cycle.get(rep, (0, 0))
        return done / total if total else None


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


# ---------------------------------------------------------------------------------------------- satisfaction


@dataclass
class SatisfactionReport:
    by_product: dict[str | None, float]
    by_region: dict[str | None, float]
    most: list[tuple[int, float]]  # customer, average rating
    least: list[tuple[int, float]]


def satisfaction(feedback: list[FeedbackInfo], customers: dict[int, CustomerInfo], period: Period,
                 share: float = 0.2) -> SatisfactionReport:
    rated = [f for f in feedback if f.rating is not None and f.created_at.date() in period]

    def average(groups: dict) -> dict:
        return {k: round(sum(v) / len(v), 2) for k, v in groups.items()}
    by_product, by_region, by_customer = defaultdict(list), defaultdict(list), defaultdict(list)
    for f in rated:
        by_product[f.product].append(f.rating)
        by_region[customers[f.customer_id].region if f.customer_id in customers else None].append(f.rating)
        by_customer[f.customer_id].append(f.rating)
    # Most and least satisfied are the top and bottom `share` of the customers who rated — never the same
    # customer in both (one or two raters: no "least" at all, and two customers with the same average are
    # neither more nor less satisfied than each other).
    averages = sorted(average(by_customer).items(), key=lambda x: (-x[1], x[0]))
    n = max(1, math.floor(len(averages) * share)) if len(averages) >= 2 else len(averages)
    most = averages[:n]
    rest = [a for a in averages[n:] if a[1] < most[-1][1]] if most else []
    least = sorted(rest, key=lambda x: (x[1], x[0]))[:n]
    return SatisfactionReport(average(by_product), average(by_region), most, least)
