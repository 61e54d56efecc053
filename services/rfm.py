"""RFM analysis: Recency, Frequency, Monetary, each scored 1–5, and the segment they make.

Rules:
- Only active customers that have bought (not voided) are scored; the others have no RFM.
- R = days since the last purchase (fewer = higher), F = number of purchases, M = total amount, all-time,
  from the customer's roll-ups. Each is scored by quintile among the scored customers: 5 = the best 20%.
  Equal values get equal scores (a tie never splits across two scores).
- Segments, first that fits: champions (R≥4, F≥4, M≥4); can't lose (R≤2, F≥4, M≥4 — the best customers
  gone quiet); at risk (R≤2 with F≥3 or M≥3); loyal (F≥4);
  new (R≥4, F≤1); potential (R≥3); hibernating (R=2); lost (R=1).
- Scores are refreshed daily by the scheduler (and by `python main.py rfm`); the card shows them.
- Visit first: `visit_first` (valuable and drifting away), the same rule in /today and in the reports.
"""

from __future__ import annotations

from datetime import date

import numpy as np
from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from models import Customer

SEGMENTS = ("champions", "cant_lose", "at_risk", "loyal", "new", "potential", "hibernating", "lost")


def segment(r: int, f: int, m: int) -> str:
    if r >= 4 and f >= 4 and m >= 4:
        return "champions"
    if r <= 2 and f >= 4 and m >= 4:
        return "cant_lose"
    if r <= 2 and (f >= 3 or m >= 3):
        return "at_risk"
    if f >= 4:
        return "loyal"
    if r >= 4 and f <= 1:
        return "new"
    if r >= 3:
        return "potential"
    return "hibernating" if r == 2 else "lost"


def visit_first(now: tuple[int, int, int], before: tuple[int, int, int] | None = None) -> bool:
    """Rule "visit first" — high contribution and high churn risk, one rule for the rep's /today and the
    managers' report: *valuable* (M ≥ 4 now or in the previous period) and *drifting away* (R ≤ 2 now, or R
    fell by 2 or more since the previous period to 3 or less; R = 0 means no purchase in the window at
    all). A customer who bought recently (R ≥ 4) is never on it, however much their scores moved. The
    card keeps no earlier scores, so on the rep's side only the first kind of drift applies."""
    r, _f, m = now
    valuable = m >= 4 or (before is not None and before[2] >= 4)
    fell = before is not None and before[0] - r >= 2 and r <= 3
    return valuable and (r <= 2 or fell)


def quintile_scores(values: list[float]) -> list[int]:
    """1–5 by quintile of rank (higher value = higher score); ties share the score of their first rank."""
    return quintile_array(values).tolist()


def quintile_array(values: object) -> np.ndarray:
    """`quintile_scores` as a numpy array (for scoring many customers at once)."""
    array = np.asarray(values, dtype=np.float64)
    n = len(array)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    ranks = np.searchsorted(np.sort(array), array, side="left")  # the first rank of equal values
    return (1 + np.minimum(4, ranks * 5 // n)).astype(np.int64)


def segment_codes(r: np.ndarray, f: np.ndarray, m: np.ndarray) -> np.ndarray:
    """`segment` for arrays of scores at once: the index of each one's segment in SEGMENTS."""
    conditions = [(r >= 4) & (f >= 4) & (m >= 4), (r <= 2) & (f >= 4) & (m >= 4), (r <= 2) & ((f >= 3) | (m >= 3)),
                  f >= 4, (r >= 4) & (f <= 1), r >= 3, r == 2]
    return np.select(conditions, range(len(conditions)), default=SEGMENTS.index("lost"))


async def score_all(session: AsyncSession, today: date, *, batch: int = 5000) -> int:
    """Score every customer that has bought; clear the scores of those that no longer qualify. Returns
    how many customers were scored."""
    rows = (await session.execute(select(Customer.id, Customer.last_txn_on, Customer.txn_count,
                                         Customer.txn_amount_cents).where(
        Customer.archived_at.is_(None), Customer.txn_count > 0, Customer.last_txn_on.is_not(None)))).all()
    ids = [row[0] for row in rows]
    r = quintile_scores([-(today - row[1]).days for row in rows])
    f = quintile_scores([row[2] for row in rows])
    m = quintile_scores([row[3] for row in rows])
    await session.execute(update(Customer).where(Customer.rfm_r.is_not(None)).values(
        rfm_r=None, rfm_f=None, rfm_m=None, rfm_scored_on=None))
    table = Customer.__table__
    for start in range(0, len(ids), batch):
        params = [{"cid": ids[i], "r": r[i], "f": f[i], "m": m[i], "on": today}
                  for i in range(start, min(start + batch, len(ids)))]
        await session.execute(table.update().where(table.c.id == bindparam("cid")).values(
            rfm_r=bindparam("r"), rfm_f=bindparam("f"), rfm_m=bindparam("m"), rfm_scored_on=bindparam("on")), params)
    return len(ids)


async def my_slice(session: AsyncSession, owner_id: int, *, limit: int = 5) -> tuple[dict[str, int], list[Customer]]:
    """A rep's own slice: how many of their customers are in each segment, and their "visit first" list
    (`visit_first`), the most valuable first."""
    rows = list((await session.execute(select(Customer).where(
        Customer.owner_id == owner_id, Customer.archived_at.is_(None), Customer.rfm_r.is_not(None)))).scalars())
    counts: dict[str, int] = {}
    for c in rows:
        counts[segment(c.rfm_r, c.rfm_f, c.rfm_m)] = counts.get(segment(c.rfm_r, c.rfm_f, c.rfm_m), 0) + 1
    first = sorted((c for c in rows if visit_first((c.rfm_r, c.rfm_f, c.rfm_m))),
                   key=lambda c: (-c.rfm_m, -c.txn_amount_cents, c.id))
    return counts, first[:limit]
