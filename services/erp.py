"""What the ERP sync API reads: a customer by its ERP code, its purchases, a lookup, the reminders due —
each only as far as the caller may see (services.access), each as plain JSON-ready data.

Writes go through services.importer.import_records: the same validation and upsert as a file import.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from models import Customer, Purchase, User
from services.access import Viewer
from services.reminders import compute_due

if TYPE_CHECKING:  # the lookup (and its pinyin tables) loads only where it is used: `reminders due` starts fast
    from services.lookup import LookupIndex

MAX_LIMIT = 500


def _money(cents: int | None) -> str | None:
    return None if cents is None else f"{cents / 100:.2f}"


def _when(value: date | datetime | None) -> str | None:
    return None if value is None else value.isoformat()


async def _owner_names(session: AsyncSession, ids: set[int]) -> dict[int, str]:
    if not ids:
        return {}
    return dict((await session.execute(select(User.id, User.name).where(User.id.in_(sorted(ids))))).all())


def customer_json(customer: Customer, owner: str | None) -> dict[str, Any]:
    return {
        "id": customer.id, "external_id": customer.external_id, "name": customer.name,
        "short_name": customer.short_name, "aliases": list(customer.aliases or []), "phone": customer.phone,
        "email": customer.email, "address": customer.address, "owner": owner, "stage": customer.stage,
        "txn_count": customer.txn_count, "txn_amount": _money(customer.txn_amount_cents),
        "first_txn_on": _when(customer.first_txn_on), "last_txn_on": _when(customer.last_txn_on),
        "last_contact_at": _when(customer.last_contact_at),
        "rfm": None if customer.rfm_r is None else {"r": customer.rfm_r, "f": customer.rfm_f, "m": customer.rfm_m,
                                                     "segment": customer.rfm_segment,
                                                     "scored_on": _when(customer.rfm_scored_on)},
        "updated_at": _when(customer.updated_at),
    }


async def customer_by_code(session: AsyncSession, viewer: Viewer, external_id: str) -> Customer | None:
    """Rule: an active customer with this ERP code that the caller may see; None otherwise (a customer the
    caller may not see is not found, as in chat)."""
    customer = await session.scalar(select(Customer).where(Customer.external_id == external_id,
                                                            Customer.archived_at.is_(None)))
    if customer is None or not viewer.can_see(customer.owner_id):
        return None
    return customer


async def customer_by_code_json(session: AsyncSession, viewer: Viewer, external_id: str) -> dict[str, Any] | None:
    customer = await customer_by_code(session, viewer, external_id)
    if customer is None:
        return None
    owners = await _owner_names(session, {customer.owner_id} if customer.owner_id else set())
    return customer_json(customer, owners.get(customer.owner_id))


async def purchases_json(session: AsyncSession, customer: Customer, *, since: date | None,
                         limit: int) -> list[dict[str, Any]]:
    """The customer's purchases (voided ones too, marked), newest first."""
    query = select(Purchase).where(Purchase.customer_id == customer.id)
    if since is not None:
        query = query.where(Purchase.purchased_on >= since)
    query = query.order_by(Purchase.purchased_on.desc(), Purchase.id.desc()).limit(min(limit, MAX_LIMIT))
    return [{"order_no": p.order_no, "purchased_on": _when(p.purchased_on), "products": p.products,
             "quantity": p.quantity, "amount": _money(p.amount_cents), "payment_method": p.payment_method,
             "payment_status": p.payment_status, "source": p.source, "voided": p.voided_at is not None}
            for p in (await session.execute(query)).scalars()]


async def lookup_json(session: AsyncSession, viewer: Viewer, index: LookupIndex, query: str,
                      limit: int) -> list[dict[str, Any]]:
    """The lookup as in chat (services.lookup), re-checked against the database for what the caller may see."""
    from services.cards import found_customers

    found = await found_customers(session, viewer, index, query[:100], min(limit, 50))
    return [{**customer_json(f.customer, f.owner_name), "score": f.match.score, "why": f.match.why,
             "matched": f.match.matched, "exact": f.match.exact} for f in found]


async def due_json(session: AsyncSession, now: datetime | None, user_id: int | None) -> list[dict[str, Any]]:
    """What the reminder scan would create or keep now (services.reminders.compute_due), nothing created or
    sent; with each customer's name. The same listing as `reminders due --json`."""
    due = await compute_due(session, now, user_id=user_id, ordered=True)
    names: dict[int, str] = {}
    ids = sorted({d.customer_id for d in due if d.customer_id})
    for start in range(0, len(ids), 500):
        rows = await session.execute(select(Customer.id, Customer.name).where(Customer.id.in_(ids[start:start + 500])))
        names.update(dict(rows.all()))
    return [{"key": d.key, "user_id": d.user_id, "kind": d.kind, "customer_id": d.customer_id,
             "customer": names.get(d.customer_id), "subject_id": d.subject_id, "due_on": d.due_on.isoformat(),
             "priority": d.priority, "detail": d.detail} for d in due]
