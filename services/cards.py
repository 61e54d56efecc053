"""The customer card: what a rep needs to see about a customer at a glance.

Rules:
- Only a customer the viewer may see (services.access) has a card for them.
- Contact clock (联系策略): days since the last logged interaction of any kind, against the strategy's
  cycle; overdue by the days beyond the cycle. Never contacted counts from when the customer was added.
- Purchase clock (购买策略): days since the last purchase against the purchase cycle, likewise.
- Key contact persons first, at most three; open complaints counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from models import ContactPerson, ContactStrategy, Customer, Feedback, PurchaseStrategy, User, utcnow
from services.access import Viewer
from services.lookup import LookupIndex, Match
from services.messages import N_, DomainError


@dataclass
class Clock:
    """How long since something happened, against a cycle."""

    since: datetime | date | None
    days: int | None
    cycle_days: int | None

    @property
    def overdue_days(self) -> int:
        if self.days is None or self.cycle_days is None:
            return 0
        return max(0, self.days - self.cycle_days)


@dataclass
class Card:
    customer: Customer
    owner_name: str | None
    contact: Clock
    purchase: Clock
    contacts: list[ContactPerson]
    open_complaints: list[Feedback]


async def visible_customer(session: AsyncSession, viewer: Viewer, customer_id: int) -> Customer:
    """Rule "a person acts only on customers they may see": the customer, if it exists, is not archived and
    the viewer may see it; otherwise the refusal names the customer (the same words whichever it is, so
    nobody learns that another team's customer exists)."""
    customer = await session.get(Customer, customer_id)
    if customer is None or customer.archived_at is not None or not viewer.can_see(customer.owner_id):
        raise DomainError(N_("That customer is not available to you any more."))
    return customer


@dataclass
class Found:
    customer: Customer
    owner_name: str | None
    match: Match


async def found_customers(session: AsyncSession, viewer: Viewer, index: LookupIndex, query: str,
                          limit: int) -> list[Found]:
    """Rule "a lookup shows only what the viewer may see, as it is now": the index's matches (best first),
    each re-read from the database and kept only if it is still active and visible to the viewer — the
    index may lag a reassignment or an archive made by another process by a moment."""
    matches = index.search(query, viewer, limit=limit)
    if not matches:
        return []
    rows = (await session.execute(select(Customer, User.name).outerjoin(User, User.id == Customer.owner_id)
                                  .where(Customer.id.in_([m.customer_id for m in matches]),
                                         Customer.archived_at.is_(None)))).all()
    by_id = {customer.id: (customer, owner) for customer, owner in rows}
    return [Found(*by_id[m.customer_id], m) for m in matches
            if m.customer_id in by_id and viewer.can_see(by_id[m.customer_id][0].owner_id)]


def _local_day(moment: datetime, tz: ZoneInfo) -> date:
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(tz).date()


def local_days_since(moment: datetime, timezone: str, now: datetime | None = None) -> int:
    """Rule "days are calendar days where the viewer is": 0 today, 1 yesterday, …"""
    tz = ZoneInfo(timezone)
    return ((now or utcnow()).astimezone(tz).date() - _local_day(moment, tz)).days


async def customer_card(session: AsyncSession, viewer: Viewer, customer_id: int, *,
                        now: datetime | None = None, timezone: str = "Asia/Shanghai") -> Card:
    """The card as the viewer sees it; days are counted in the viewer's local calendar (a visit late
    yesterday evening was "yesterday" this morning, not "today")."""
    now = now or utcnow()
    tz = ZoneInfo(timezone)
    today = now.astimezone(tz).date()
    customer = await visible_customer(session, viewer, customer_id)
    owner = await session.get(User, customer.owner_id) if customer.owner_id else None
    contact_cycle = purchase_cycle = None
    if customer.contact_strategy_id:
        contact_cycle = (await session.get(ContactStrategy, customer.contact_strategy_id)).cycle_days
    if customer.purchase_strategy_id:
        purchase_cycle = (await session.get(PurchaseStrategy, customer.purchase_strategy_id)).cycle_days
    contacted = customer.last_contact_at or customer.created_at
    contact = Clock(customer.last_contact_at, (today - _local_day(contacted, tz)).days if contacted else None,
                    contact_cycle)
    purchase = Clock(customer.last_txn_on, (today - customer.last_txn_on).days if customer.last_txn_on else None,
                     purchase_cycle if customer.last_txn_on else None)
    people = list((await session.execute(
        select(ContactPerson).where(ContactPerson.customer_id == customer.id, ContactPerson.archived_at.is_(None))
        .order_by(ContactPerson.is_key.desc(), ContactPerson.id).limit(3))).scalars())
    complaints = list((await session.execute(select(Feedback).where(
        Feedback.customer_id == customer.id, Feedback.kind == "complaint", Feedback.status == "open")
        .order_by(Feedback.created_at, Feedback.id))).scalars())
    return Card(customer, owner.name if owner else None, contact, purchase, people, complaints)
