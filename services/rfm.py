"""RFM analysis: Recency, Frequency, Monetary, each scored 1–5, and the segment they make.

One definition everywhere (the card, /today, the digests, the reports and the workbook):
- Window: the purchases (not voided) of the RFM_DAYS = 365 days ending on the day scored — for the card
  and /today yesterday, the last full day; for a report the end of its period, so a report made today
  shows exactly the scores on the cards. A manager may choose another window in a report (90, 180 or
  730 days); that re-scores, and the report says so.
- Population: every active (not archived) customer of the company with a purchase in the window — one
  company-wide ranking, never re-ranked within a team or for one rep: a team's report shows its
  customers' company-wide scores.
- R = the day of the last purchase in the window (later = higher), F = purchases in the window, M = their
  amount. Each is scored by quintile of rank: 5 = the best 20%.
- Tie rule: customers with equal values share one score, the quintile of the middle of their ranks. Ties
  at the top stay at the top (five who all bought yesterday, among a hundred, are all R5), ties at the
  bottom stay low, and when everybody is equal nobody is better or worse than the middle: 3. A middle
  that falls exactly on the line between two fifths takes the higher one (the bottom 40 % tied: 2).
- Segments, first that fits: champions (R≥4, F≥4, M≥4); can't lose (R≤2, F≥4, M≥4 — the best customers
  gone quiet); at risk (R≤2 with M≥3, or F≥3 from more than one purchase); loyal (F≥4); new (R≥4 and
  exactly one purchase in the window). "New" and "at risk" read the purchase count as well as F: one-time
  buyers are often most of the base and then share a middle F (F3 when they are 80 %), which says
  nothing about loyalty. Then potential (R≥3); hibernating (R=2); lost (R=1).
- Scores are refreshed daily by the scheduler (and by `python main.py rfm`) and stored on the customer
  with their segment and the day scored.
- Visit first: `visit_first` (valuable and drifting away), the same rule in /today and in the reports.
"""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
from sqlalchemy import bindparam, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from models import Customer

RFM_DAYS = 365  # the one window (see the module's rules)

SEGMENTS = ("champions", "cant_lose", "at_risk", "loyal", "new", "potential", "hibernating", "lost")


def segment(r: int, f: int, m: int, purchases: int) -> str:
    """The segment of one customer's scores; `purchases` is their number of purchases in the window."""
    if r >= 4 and f >= 4 and m >= 4:
        return "champions"
    if r <= 2 and f >= 4 and m >= 4:
        return "cant_lose"
    if r <= 2 and ((f >= 3 and purchases >= 2) or m >= 3):
        return "at_risk"
    if f >= 4:
        return "loyal"
    if r >= 4 and purchases == 1:
        return "new"
    if r >= 3:
        return "potential"
    return "hibernating" if r == 2 else "lost"


def visit_first(now: tuple[int, ...], before: tuple[int, ...] | None = None) -> bool:
    """Rule "visit first" — high contribution and high churn risk, one rule for the rep's /today and the
    managers' report: *valuable* (M ≥ 4 now or in the previous period) and *drifting away* (R ≤ 2 now, or R
    fell by 2 or more since the previous period to 3 or less; R = 0 means no purchase in the window at
    all). A customer who bought recently (R ≥ 4) is never on it, however much their scores moved. The
    card keeps no earlier scores, so on the rep's side only the first kind of drift applies."""
    r, m = now[0], now[2]
    valuable = m >= 4 or (before is not None and before[2] >= 4)
    fell = before is not None and before[0] - r >= 2 and r <= 3
    return valuable and (r <= 2 or fell)


def quintile_scores(values: list[float]) -> list[int]:
    """1–5 by quintile of rank (higher value = higher score); equal values share the score of the middle
    of their ranks (the module's tie rule)."""
    return quintile_array(values).tolist()


def quintile_array(values: object) -> np.ndarray:
    """`quintile_scores` as a numpy array (for scoring many customers at once). A value's ranks run from
    `low` (how many are smaller) to `high` (how many are smaller or equal, less one); the score is the
    fifth that holds the middle of that run: 1 + ⌊5 · (low + high + 1) / 2n⌋, at most 5."""
    array = np.asarray(values)
    n = len(array)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if array.dtype.kind in "iu" and int(array.max()) - int(array.min()) <= 4 * n + 1024:
        # Whole numbers over a narrow range (days, purchase counts): counted instead of sorted.
        offsets = (array - array.min()).astype(np.int64)
        counts = np.bincount(offsets)
        high = np.cumsum(counts)[offsets]  # how many are smaller or equal
        low = high - counts[offsets]
    else:  # sorted once; each run of equal values spans ranks low … high - 1
        array = array.astype(np.float64)
        order = np.argsort(array, kind="stable")
        ordered = array[order]
        new_run = np.empty(n, dtype=bool)
        new_run[0] = True
        np.not_equal(ordered[1:], ordered[:-1], out=new_run[1:])
        starts = np.flatnonzero(new_run)
        run = np.cumsum(new_run) - 1
        low, high = np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int64)
        low[order] = starts[run]
        high[order] = np.append(starts[1:], n)[run]
    return (1 + np.minimum(4, (5 * (low + high)) // (2 * n))).astype(np.int64)


def segment_codes(r: np.ndarray, f: np.ndarray, m: np.ndarray, purchases: np.ndarray) -> np.ndarray:
    """`segment` for arrays of scores at once: the index of each one's segment in SEGMENTS."""
    conditions = [(r >= 4) & (f >= 4) & (m >= 4), (r <= 2) & (f >= 4) & (m >= 4),
                  (r <= 2) & (((f >= 3) & (purchases >= 2)) | (m >= 3)), f >= 4, (r >= 4) & (purchases == 1), r >= 3, r == 2]
    return np.select(conditions, range(len(conditions)), default=SEGMENTS.index("lost"))


def score_columns(last: np.ndarray, count: np.ndarray, amount: np.ndarray) -> tuple[np.ndarray, np.ndarray,
                                                                                   np.ndarray, np.ndarray]:
    """`score` over columns (one population): the last purchase days (ordinals), purchase counts and amounts
    in cents, each one value per customer; returns R, F, M and the segment codes in the same order."""
    r, f, m = quintile_array(last), quintile_array(count), quintile_array(np.asarray(amount, dtype=np.float64))
    return r, f, m, segment_codes(r, f, m, count)


def window_ending(day: date, days: int = RFM_DAYS) -> tuple[date, date]:
    """The first and last day of the RFM window of `days` days ending on `day`."""
    return day - timedelta(days=days - 1), day


async def score_all(session: AsyncSession, today: date, *, batch: int = 5000, again: bool = True,
                    commit_each: bool = False) -> int:
    """Score every customer that bought in the window ending yesterday (the last full day before `today`,
    the company's calendar day); clear the scores of those that no longer qualify. Returns how many
    customers were scored; with again=False, nothing is done (0) when the scores are already of that day
    (the scheduler asks every hour, so the cards move on soon after the company's midnight).

    Rule "never hold the database for long" (issue 18): with `commit_each` (the scheduler's run) every
    `batch` of customers is its own short transaction — one transaction over 100k customers held SQLite's
    write lock for seconds while every rep's update waited for it. A card may show the day before's scores
    for the seconds the batches take; each card's date says which."""
    from services.reports import window_aggregates  # the reports' loader (it imports this module)

    as_of = today - timedelta(days=1)
    if not again and await session.scalar(select(func.max(Customer.rfm_scored_on))) == as_of:
        return 0
    sums = await window_aggregates(session, *window_ending(as_of))
    ids = sums.ids.tolist()
    r, f, m, codes = score_columns(sums.last, sums.count, sums.amount)
    scored_before = set((await session.execute(select(Customer.id).where(Customer.rfm_r.is_not(None)))).scalars())
    gone = sorted(scored_before.difference(ids))
    if commit_each:
        await session.commit()  # the reads' transaction ends before the first write
    for start in range(0, len(gone), batch):
        await session.execute(update(Customer).where(Customer.id.in_(gone[start:start + batch])).values(
            rfm_r=None, rfm_f=None, rfm_m=None, rfm_segment=None, rfm_scored_on=None))
        if commit_each:
            await session.commit()
    table = Customer.__table__
    r, f, m, names = r.tolist(), f.tolist(), m.tolist(), [SEGMENTS[code] for code in codes.tolist()]
    for start in range(0, len(ids), batch):
        params = [{"cid": ids[i], "r": r[i], "f": f[i], "m": m[i], "s": names[i], "on": as_of}
                  for i in range(start, min(start + batch, len(ids)))]
        await session.execute(table.update().where(table.c.id == bindparam("cid")).values(
            rfm_r=bindparam("r"), rfm_f=bindparam("f"), rfm_m=bindparam("m"), rfm_segment=bindparam("s"),
            rfm_scored_on=bindparam("on")), params)
        if commit_each:
            await session.commit()
    return len(ids)


async def my_slice(session: AsyncSession, owner_id: int, *, limit: int = 5) -> tuple[dict[str, int], list[Customer]]:
    """A rep's own slice: how many of their customers are in each segment, and their "visit first" list
    (`visit_first`), the most valuable first."""
    rows = list((await session.execute(select(Customer).where(
        Customer.owner_id == owner_id, Customer.archived_at.is_(None), Customer.rfm_r.is_not(None))
        .order_by(Customer.id))).scalars())
    counts: dict[str, int] = {}
    for c in rows:
        if c.rfm_segment:
            counts[c.rfm_segment] = counts.get(c.rfm_segment, 0) + 1
    first = sorted((c for c in rows if visit_first((c.rfm_r, c.rfm_f, c.rfm_m))),
                   key=lambda c: (-c.rfm_m, -c.txn_amount_cents, c.id))
    return counts, first[:limit]
