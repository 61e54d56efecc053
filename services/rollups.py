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

from models import Customer, Interaction, Purchase, as_utc

_CHUNK = 500  # keeps IN (...) lists well under SQLite's parameter limit


async def refresh(session: AsyncSession, customer_ids: Iterable[int]) -> None:
    """Recompute the roll-ups of these customers from their rows, in the caller's transaction. Only
    values that changed are written, the purchase figures and the last contact separately: the reminder
    indexes on these columns (models.customer) are then only touched when their columns really change."""
    ids = sorted(set(customer_ids))
    if not ids:
        return
    await session.flush()
    table = Customer.__table__
    purchase_columns = ("txn_count", "txn_amount_cents", "first_txn_on", "last_txn_on", "purchase_gap_days")
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start:start + _CHUNK]
        current = {row[0]: row[1:] for row in (await session.execute(
            select(Customer.id, *(getattr(Customer, c) for c in purchase_columns), Customer.last_contact_at)
            .where(Customer.id.in_(chunk)))).all()}
        days: dict[int, list[date]] = {cid: [] for cid in current}
        amounts: dict[int, int] = dict.fromkeys(current, 0)
        for customer_id, purchased_on, amount in (await session.execute(
                select(Purchase.customer_id, Purchase.purchased_on, Purchase.amount_cents).where(
                    Purchase.customer_id.in_(chunk), Purchase.voided_at.is_(None)))).all():
            days[customer_id].append(purchased_on)
            amounts[customer_id] += amount
        contacts = dict((await session.execute(
            select(Interaction.customer_id, func.max(Interaction.occurred_at))
            .where(Interaction.customer_id.in_(chunk)).group_by(Interaction.customer_id))).all())
        purchases, contacted = [], []
        for cid, (*old, old_contact) in current.items():
            d = days[cid]
            new = (len(d), amounts[cid], min(d) if d else None, max(d) if d else None, median_gap(d, len(d)))
            if tuple(old) != new:
                purchases.append({"cid": cid, **{f"v_{c}": v for c, v in zip(purchase_columns, new)}})
            last_contact = contacts.get(cid)
            if as_utc(last_contact) != as_utc(old_contact):
                contacted.append({"cid": cid, "v_last_contact_at": last_contact})
        if purchases:
            await session.execute(update(table).where(table.c.id == bindparam("cid")).values(
                {c: bindparam(f"v_{c}") for c in purchase_columns}), purchases)
        if contacted:
            await session.execute(update(table).where(table.c.id == bindparam("cid")).values(
                last_contact_at=bindparam("v_last_contact_at")), contacted)
    # Customer objects already loaded in this session must not keep showing the old figures.
    wanted = set(ids)
    for obj in list(session.identity_map.values()):
        if isinstance(obj, Customer) and obj.id in wanted:
            await session.refresh(obj, [*purchase_columns, "last_contact_at"])


RHYTHM_MIN_PURCHASES = 4


def median_gap(days: Iterable[date], count: int) -> float | None:
    """The purchase rhythm of `count` purchases made on `days` (see the module rule), or None."""
    unique = sorted(set(days))
    if count < RHYTHM_MIN_PURCHASES or len(unique) < 2:
        return None
    return float(statistics.median((b - a).days for a, b in zip(unique, unique[1:])))
