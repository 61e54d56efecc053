"""Customer roll-ups rule: transaction count, amount, first and last transaction, and last contact are
always what the purchase and interaction rows say. Every service that adds, corrects, voids or imports
those rows calls `refresh` for the customers it touched, inside the same transaction, so the summary
can never disagree with the rows (voided purchases do not count).

Purchase rhythm rule: once a customer has bought 4 or more times, their rhythm is the median number of
days between consecutive purchase days (several orders on one day count as one visit to the shop);
the reminders use it when the customer has no purchase strategy."""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from datetime import date

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from models import Customer, Interaction, Purchase

_CHUNK = 500  # keeps IN (...) lists well under SQLite's parameter limit


async def refresh(session: AsyncSession, customer_ids: Iterable[int]) -> None:
    """Recompute the roll-ups of these customers from their rows, in SQL, in the caller's transaction."""
    ids = sorted(set(customer_ids))
    if not ids:
        return
    await session.flush()
    live = Purchase.voided_at.is_(None)
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start:start + _CHUNK]
        of_customer = (Purchase.customer_id == Customer.id) & live
        await session.execute(
            update(Customer)
            .where(Customer.id.in_(chunk))
            .values(
                txn_count=select(func.count(Purchase.id)).where(of_customer).scalar_subquery(),
                txn_amount_cents=select(func.coalesce(func.sum(Purchase.amount_cents), 0))
                .where(of_customer).scalar_subquery(),
                first_txn_on=select(func.min(Purchase.purchased_on)).where(of_customer).scalar_subquery(),
                last_txn_on=select(func.max(Purchase.purchased_on)).where(of_customer).scalar_subquery(),
                last_contact_at=select(func.max(Interaction.occurred_at))
                .where(Interaction.customer_id == Customer.id).scalar_subquery(),
            )
            .execution_options(synchronize_session=False)
        )
    await _refresh_gaps(session, ids)
    # Customer objects already loaded in this session must not keep showing the old figures.
    wanted = set(ids)
    for obj in list(session.identity_map.values()):
        if isinstance(obj, Customer) and obj.id in wanted:
            await session.refresh(obj, ["txn_count", "txn_amount_cents", "first_txn_on", "last_txn_on",
                                        "last_contact_at", "purchase_gap_days"])


RHYTHM_MIN_PURCHASES = 4


def median_gap(days: Iterable[date], count: int) -> float | None:
    """The purchase rhythm of `count` purchases made on `days` (see the module rule), or None."""
    unique = sorted(set(days))
    if count < RHYTHM_MIN_PURCHASES or len(unique) < 2:
        return None
    return float(statistics.median((b - a).days for a, b in zip(unique, unique[1:])))


async def _refresh_gaps(session: AsyncSession, ids: list[int]) -> None:
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start:start + _CHUNK]
        days: dict[int, list[date]] = {cid: [] for cid in chunk}
        rows = await session.execute(select(Purchase.customer_id, Purchase.purchased_on).where(
            Purchase.customer_id.in_(chunk), Purchase.voided_at.is_(None)))
        for customer_id, purchased_on in rows:
            days[customer_id].append(purchased_on)
        values = [{"cid": cid, "gap": median_gap(d, len(d))} for cid, d in days.items()]
        table = Customer.__table__
        await session.execute(update(table).where(table.c.id == bindparam("cid"))
                              .values(purchase_gap_days=bindparam("gap")), values)
