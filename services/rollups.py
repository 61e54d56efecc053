"""Customer roll-ups rule: transaction count, amount, first and last transaction, and last contact are
always what the purchase and interaction rows say. Every service that adds, corrects, voids or imports
those rows calls `refresh` for the customers it touched, inside the same transaction, so the summary
can never disagree with the rows (voided purchases do not count)."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import func, select, update
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
    # Customer objects already loaded in this session must not keep showing the old figures.
    wanted = set(ids)
    for obj in list(session.identity_map.values()):
        if isinstance(obj, Customer) and obj.id in wanted:
            await session.refresh(obj, ["txn_count", "txn_amount_cents", "first_txn_on", "last_txn_on",
                                        "last_contact_at"])
