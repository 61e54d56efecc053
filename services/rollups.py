"""Customer roll-ups rule: transaction count, amount, first and last transaction, and last contact are
always what the purchase and interaction rows say. Every service that adds, corrects, voids or imports
those rows calls `refresh` for the customers it touched, inside the same transaction, so the summary
can never disagree with the rows (voided purchases do not count).

Purchase rhythm rule: once a customer has bought 4 or more times, their rhythm is the median number of
days between consecutive purchase days (several orders on one day count as one visit to the shop);
the reminders use it when the customer has no purchase strategy.

Brought forward, not recomputed: when a customer's only change is new live purchases (an import or ERP
batch adding orders), `add_purchases` moves the stored roll-ups forward from the new rows alone — count
and amount add up, first and last purchase are the earlier and the later — and reads the customer's
purchase days only for the rhythm, once they have 4 or more purchases. The result is what `refresh`
computes (tests/test_rollups.py compares them on random histories); anything else (a corrected, moved or
voided purchase) goes through `refresh`."""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from datetime import date

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from models import Customer, Interaction, Purchase, Stage, as_utc
from services.sql import among, value_chunks

PURCHASE_COLUMNS = ("txn_count", "txn_amount_cents", "first_txn_on", "last_txn_on", "purchase_gap_days")


async def refresh(session: AsyncSession, customer_ids: Iterable[int]) -> None:
    """Recompute the roll-ups of these customers from their rows, in the caller's transaction. Only
    values that changed are written, the purchase figures and the last contact separately: the reminder
    indexes on these columns (models.customer) are then only touched when their columns really change."""
    ids = sorted(set(customer_ids))
    if not ids:
        return
    await session.flush()
    table = Customer.__table__
    purchase_columns = PURCHASE_COLUMNS
    for chunk in value_chunks(session, ids):
        current = {row[0]: row[1:] for row in (await session.execute(_locked(
            select(Customer.id, *(getattr(Customer, c) for c in purchase_columns), Customer.last_contact_at)
            .where(among(session, Customer.id, chunk))))).all()}
        days: dict[int, list[date]] = {cid: [] for cid in current}
        amounts: dict[int, int] = dict.fromkeys(current, 0)
        for customer_id, purchased_on, amount in (await session.execute(
                select(Purchase.customer_id, Purchase.purchased_on, Purchase.amount_cents).where(
                    among(session, Purchase.customer_id, chunk), Purchase.voided_at.is_(None)))).all():
            days[customer_id].append(purchased_on)
            amounts[customer_id] += amount
        contacts = dict((await session.execute(
            select(Interaction.customer_id, func.max(Interaction.occurred_at))
            .where(among(session, Interaction.customer_id, chunk)).group_by(Interaction.customer_id))).all())
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
    await _reload(session, set(ids), [*purchase_columns, "last_contact_at"])


def _locked(statement):
    """Rule "no roll-up is written over": the customers' rows are locked (PostgreSQL's FOR NO KEY UPDATE, in
    id order so two transactions never wait on each other in a circle) before their roll-ups are read, so
    a second transaction adding to the same customer reads them after the first has committed and adds to
    that — two ERP requests at once each used to add to the same old count, one's orders lost. It does not
    wait for transactions that only insert rows referring to the customer (their KEY SHARE lock). SQLite
    has one writer at a time: there the caller's earlier writes already hold that lock."""
    return statement.order_by(Customer.id).with_for_update(key_share=True)


async def _reload(session: AsyncSession, ids: set[int], columns: list[str]) -> None:
    """Customer objects already loaded in this session must not keep showing the old figures."""
    for obj in list(session.identity_map.values()):
        if isinstance(obj, Customer) and obj.id in ids:
            await session.refresh(obj, columns)


class Added:
    """What a customer's new live purchases add up to: how many, their amount in cents, their first and last
    day — a few numbers per customer, however many rows an import adds."""

    __slots__ = ("count", "amount", "first", "last")

    def __init__(self) -> None:
        self.count, self.amount = 0, 0
        self.first: date | None = None
        self.last: date | None = None

    def add(self, day: date, amount: int) -> None:
        self.count += 1
        self.amount += amount
        if self.first is None or day < self.first:
            self.first = day
        if self.last is None or day > self.last:
            self.last = day


async def add_purchases(session: AsyncSession, added: dict[int, Added]) -> None:
    """Bring the roll-ups of these customers forward by the live purchases (`Added`) just
    written for them — written, not only planned: the rhythm reads them back with the older ones — when
    these are the customers' only purchase changes since their roll-ups were last right (see the module
    rule). Such a customer has bought, so a prospect among them becomes a customer (as after `refresh`,
    services.importer). In the caller's transaction."""
    ids = sorted(cid for cid, new in added.items() if new.count)
    if not ids:
        return
    await session.flush()
    table = Customer.__table__
    writes: dict[bool, list[dict]] = {False: [], True: []}  # by whether the customer becomes a customer
    for chunk in value_chunks(session, ids):
        current = (await session.execute(_locked(
            select(Customer.id, Customer.txn_count, Customer.txn_amount_cents, Customer.first_txn_on,
                   Customer.last_txn_on, Customer.stage).where(among(session, Customer.id, chunk))))).all()
        rhythm = [cid for cid, count, *_ in current if count + added[cid].count >= RHYTHM_MIN_PURCHASES]
        days: dict[int, list[date]] = {cid: [] for cid in rhythm}
        for part in value_chunks(session, rhythm):
            for customer_id, purchased_on in (await session.execute(
                    select(Purchase.customer_id, Purchase.purchased_on).where(
                        among(session, Purchase.customer_id, part), Purchase.voided_at.is_(None)))).all():
                days[customer_id].append(purchased_on)
        for cid, count, amount, first, last, stage in current:
            new = added[cid]
            count += new.count
            writes[stage != Stage.customer].append({
                "cid": cid, "v_txn_count": count, "v_txn_amount_cents": amount + new.amount,
                "v_first_txn_on": new.first if first is None else min(first, new.first),
                "v_last_txn_on": new.last if last is None else max(last, new.last),
                "v_purchase_gap_days": median_gap(days[cid], count) if cid in days else None})
    # The stage only where it changes (an index on it is then touched only for new customers).
    for becomes_customer, rows in writes.items():
        if rows:
            await session.execute(update(table).where(table.c.id == bindparam("cid")).values(
                {c: bindparam(f"v_{c}") for c in PURCHASE_COLUMNS} | ({"stage": Stage.customer} if becomes_customer else {})),
                rows)
    await _reload(session, set(ids), [*PURCHASE_COLUMNS, "stage"])


RHYTHM_MIN_PURCHASES = 4


def median_gap(days: Iterable[date], count: int) -> float | None:
    """The purchase rhythm of `count` purchases made on `days` (see the module rule), or None."""
    unique = sorted(set(days))
    if count < RHYTHM_MIN_PURCHASES or len(unique) < 2:
        return None
    return float(statistics.median((b - a).days for a, b in zip(unique, unique[1:])))
