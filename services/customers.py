"""Customers: create, edit, archive (never delete), restore.

Rules:
- A customer needs a name; an external id (ERP code) is unique among all customers, archived included.
- Dictionary fields must point at an entry of the right dictionary.
- Deleting is archiving (history is kept for years): an archived customer disappears from
  lists, search and reminders, but its contacts, purchases, interactions and feedback stay, and it can
  be restored.
- Every change is written to the audit log with the old and new values.
- Duplicates: a new customer whose name is near-identical to an existing one (same core name once the
  city and the company-form words are dropped, one core inside the other, or ≥ 75% alike), or whose
  phone is already a customer's or a contact's number, is flagged before it is created — the person
  decides whether it is the same one.
- Relationship stage: "not buying now" needs the time they expect to buy (today or
  later), "definitely not buying" needs the reason; leaving those stages clears them.
- Changes from chat go through the viewer: a person edits only customers they may see.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from rapidfuzz import fuzz
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from models import ContactStrategy, Customer, DictionaryEntry, PurchaseStrategy, Stage, User, utcnow
from services import audit, reminders
from services.access import Viewer
from services.fields import CUSTOMER_FIELDS
from services.lookup import LookupIndex, name_cores, track_change
from services.messages import N_, DomainError
from services.parsing import phone_digits
from services.sql import replayed

EDITABLE = {
    "external_id", "name", "short_name", "aliases", "region_id", "nature_id", "source_id", "category_id",
    "industry_id", "scale_id", "years_in_business_id", "industry_standing_id", "settlement_method_id",
    "contact_strategy_id", "purchase_strategy_id", "credit_rating", "employees", "wants_agency", "phone",
    "fax", "email", "website", "address", "postcode", "latitude", "longitude", "notes", "owner_id",
    "stage", "expected_purchase_on", "lost_reason",
}
# The longest text each field takes: the same limits as a file import (services.fields), plus the reason.
TEXT_LIMITS = {**{spec.name: spec.max_len for spec in CUSTOMER_FIELDS if spec.type in ("text", "phone") and spec.max_len},
               "lost_reason": 1000}
DICTIONARY_FIELDS = {
    "region_id": "region", "nature_id": "nature", "source_id": "source", "category_id": "category",
    "industry_id": "industry", "scale_id": "scale", "years_in_business_id": "years_in_business",
    "industry_standing_id": "industry_standing", "settlement_method_id": "settlement_method",
}


async def _check(session: AsyncSession, values: dict[str, Any], *, customer_id: int | None) -> None:
    unknown = set(values) - EDITABLE
    if unknown:
        raise ValueError(f"not editable: {sorted(unknown)}")  # a programming error, not user input
    if "name" in values:
        values["name"] = (values["name"] or "").strip()
        if not values["name"]:
            raise DomainError(N_("a customer needs a name"))
    for field, limit in TEXT_LIMITS.items():
        if isinstance(values.get(field), str) and len(values[field]) > limit:
            raise DomainError(N_("too long: at most {limit} characters"), limit=limit)
    if values.get("external_id"):
        clash = await session.scalar(select(Customer.id).where(Customer.external_id == values["external_id"]))
        if clash and clash != customer_id:
            raise DomainError(N_("another customer already has the code “{code}”"), code=values["external_id"])
    for field, kind in DICTIONARY_FIELDS.items():
        if values.get(field) is not None:
            entry = await session.get(DictionaryEntry, values[field])
            if entry is None or entry.kind != kind:
                raise DomainError(N_("no such dictionary entry"))
    for field, model in (("contact_strategy_id", ContactStrategy), ("purchase_strategy_id", PurchaseStrategy)):
        if values.get(field) is not None and await session.get(model, values[field]) is None:
            raise DomainError(N_("no such strategy"))
    if values.get("owner_id") is not None and await session.get(User, values["owner_id"]) is None:
        raise DomainError(N_("no such user"))
    if values.get("credit_rating") is not None and not 1 <= values["credit_rating"] <= 5:
        raise DomainError(N_("a rating goes from 1 to 5"))
    if "stage" in values and values["stage"] not in {s.value for s in Stage}:
        raise DomainError(N_("no such relationship stage"))


async def create_customer(session: AsyncSession, *, user_id: int | None = None, actor: str = "user",
                          origin_key: str | None = None, **values: Any) -> Customer:
    """A new customer; the same input (`origin_key`) creating it again returns the first one."""
    if (earlier := await replayed(session, Customer, origin_key)) is not None:
        return earlier
    await _check(session, values, customer_id=None)
    customer = Customer(**values, origin_key=origin_key)
    session.add(customer)
    await session.flush()
    track_change(session, customer.id)
    audit.record(session, action="create", entity="customer", entity_id=customer.id,
                 changes={k: v for k, v in values.items() if v not in (None, "", [])}, user_id=user_id, actor=actor)
    return customer


async def get_customer(session: AsyncSession, customer_id: int, *, include_archived: bool = False) -> Customer:
    customer = await session.get(Customer, customer_id)
    if customer is None or (customer.archived_at is not None and not include_archived):
        raise DomainError(N_("customer not found"))
    return customer


async def update_customer(session: AsyncSession, customer_id: int, *, user_id: int | None = None,
                          actor: str = "user", **values: Any) -> Customer:
    customer = await get_customer(session, customer_id)
    await _check(session, values, customer_id=customer_id)
    changes = {}
    for field, new in values.items():
        old = getattr(customer, field)
        if old != new:
            changes[field] = [old, new]
            setattr(customer, field, new)
    if changes:
        customer.updated_at = utcnow()
        track_change(session, customer.id)
        audit.record(session, action="update", entity="customer", entity_id=customer.id, changes=changes,
                     user_id=user_id, actor=actor)
        if "owner_id" in changes:
            await session.flush()
            await reminders.close_answered(session, customer_ids=[customer.id])
    return customer


async def archive_customer(session: AsyncSession, customer_id: int, *, user_id: int | None = None,
                           reason: str | None = None) -> Customer:
    """Archive instead of delete: the record and all its history stay, hidden from daily use."""
    customer = await get_customer(session, customer_id)
    customer.archived_at = customer.updated_at = utcnow()
    track_change(session, customer.id)
    audit.record(session, action="archive", entity="customer", entity_id=customer.id,
                 changes={"reason": reason} if reason else {}, user_id=user_id)
    await session.flush()
    await reminders.close_answered(session, customer_ids=[customer.id])
    return customer


async def restore_customer(session: AsyncSession, customer_id: int, *, user_id: int | None = None) -> Customer:
    customer = await get_customer(session, customer_id, include_archived=True)
    if customer.archived_at is None:
        return customer
    customer.archived_at = None
    customer.updated_at = utcnow()
    track_change(session, customer.id)
    audit.record(session, action="restore", entity="customer", entity_id=customer.id, user_id=user_id)
    return customer


async def active_customers(session: AsyncSession, *, owner_id: int | None = None) -> list[Customer]:
    query = select(Customer).where(Customer.archived_at.is_(None))
    if owner_id is not None:
        query = query.where(Customer.owner_id == owner_id)
    return list((await session.execute(query.order_by(Customer.id))).scalars())


def check_can_reassign(viewer: Viewer) -> None:
    """Rule "only managers and admins reassign customers" (a rep never does, not even their own)."""
    if viewer.role == "rep":
        raise DomainError(N_("Only managers can reassign customers."))


async def assign_owner(session: AsyncSession, viewer: Viewer, customer_id: int, owner_id: int, *,
                       user_id: int | None = None) -> Customer:
    """Reassignment rule: a manager gives a customer of their team to someone in their team (an admin to
    anyone active); the old owner's open reminders about it, and the escalation, close (services.reminders)."""
    check_can_reassign(viewer)
    customer = await get_customer(session, customer_id)
    new_owner = await session.get(User, owner_id)
    if not viewer.can_see(customer.owner_id):
        raise DomainError(N_("only the customer's manager can reassign it"))
    if new_owner is None or not new_owner.active or not viewer.can_see(new_owner.id):
        raise DomainError(N_("that person is not in your team"))
    return await update_customer(session, customer_id, user_id=user_id, owner_id=new_owner.id)


@dataclass(frozen=True)
class Duplicate:
    customer_id: int
    name: str
    owner_id: int | None
    why: str  # name, phone


def _alike(new_core: str, old_core: str) -> bool:
    if not new_core or not old_core:
        return False
    short, long = sorted((new_core, old_core), key=len)
    return new_core == old_core or (len(short) >= 2 and short in long) or fuzz.ratio(new_core, old_core) >= 75


def possible_duplicates(index: LookupIndex, *, name: str | None = None, phone: str | None = None,
                        exclude: int | None = None) -> list[Duplicate]:
    """Existing (not archived) customers the new one may be: the duplicates rule in the module docstring.
    Looks at every customer, whoever owns it — the caller decides how much of each to show."""
    found: dict[int, Duplicate] = {}
    key = phone_digits(phone) if phone else ""
    if len(key) >= 7:
        for match in index.search(key, Viewer.everyone(), limit=5):
            if match.why == "phone" and phone_digits(match.matched) == key and match.customer_id != exclude:
                found[match.customer_id] = Duplicate(match.customer_id, match.name, index.owner_of(match.customer_id),
                                                     "phone")
    if name and name.strip():
        [core] = name_cores([name.strip()]) or [""]
        for match in index.search(name.strip()[:100], Viewer.everyone(), limit=10):
            if match.customer_id in found or match.customer_id == exclude:
                continue
            if any(_alike(core, old) for old in name_cores([match.name, match.matched])):
                found[match.customer_id] = Duplicate(match.customer_id, match.name,
                                                     index.owner_of(match.customer_id), "name")
    return list(found.values())


async def set_stage(session: AsyncSession, viewer: Viewer, customer_id: int, stage: str, *,
                    expected_purchase_on: date | None = None, lost_reason: str | None = None,
                    today: date | None = None, user_id: int | None = None) -> Customer:
    """Relationship-stage rule (module docstring): the date for "not now", the reason for "definitely not"."""
    customer = await get_customer(session, customer_id)
    if not viewer.can_see(customer.owner_id):
        raise DomainError(N_("customer not found"))
    values: dict[str, Any] = {"stage": stage, "expected_purchase_on": None, "lost_reason": None}
    if stage == Stage.not_now:
        if expected_purchase_on is None:
            raise DomainError(N_("say when they expect to buy"))
        if today is not None and expected_purchase_on < today:
            raise DomainError(N_("that date has passed; give a day from today on"))
        values["expected_purchase_on"] = expected_purchase_on
    elif stage == Stage.definitely_not:
        lost_reason = (lost_reason or "").strip()
        if not lost_reason:
            raise DomainError(N_("say why they will not buy"))
        values["lost_reason"] = lost_reason
    return await update_customer(session, customer.id, user_id=user_id, **values)


async def edit_customer(session: AsyncSession, viewer: Viewer, customer_id: int, *, user_id: int | None = None,
                        **values: Any) -> Customer:
    """An edit from chat: only a customer the person may see; owners change through assign_owner."""
    customer = await get_customer(session, customer_id)
    if not viewer.can_see(customer.owner_id) or "owner_id" in values:
        raise DomainError(N_("customer not found"))
    return await update_customer(session, customer.id, user_id=user_id, **values)
