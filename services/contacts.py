"""Contact persons (联系人): the people at a customer a rep talks to.

Rules:
- A contact person belongs to one customer and needs a name; only someone who may see the customer
  adds or changes its contacts.
- Duplicates: a second person at the same customer with the same name, or the same mobile number, is
  flagged before it is added — the person adding decides.
- Key contacts (关键联系人) come first on the card; any contact can be marked or unmarked as key.
- Contacts are archived, never deleted. Every change is audited, and the lookup index learns the new
  names and numbers (a customer is found by its contacts' names and phones).
- A contact's change is its customer's change: the customer's updated_at moves with it (`_changed`), so
  other processes' lookup indexes and a saved one find it (services.lookup rule 7, `sync`).
"""

from __future__ import annotations

from datetime import date

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from models import ContactPerson, Customer, utcnow
from services import audit
from services.access import Viewer
from services.cards import visible_customer
from services.lookup import track_change
from services.messages import N_, DomainError
from services.parsing import fold_width, phone_digits
from services.sql import replayed


async def _changed(session: AsyncSession, customer_id: int) -> None:
    """Rule "a contact's change is its customer's change" (the module's rules)."""
    customer = await session.get(Customer, customer_id)
    if customer is not None:
        customer.updated_at = utcnow()
    track_change(session, customer_id)


async def contacts_of(session: AsyncSession, viewer: Viewer, customer_id: int) -> list[ContactPerson]:
    """The customer's current contacts, key ones first."""
    customer = await visible_customer(session, viewer, customer_id)
    return list((await session.execute(
        select(ContactPerson).where(ContactPerson.customer_id == customer.id, ContactPerson.archived_at.is_(None))
        .order_by(ContactPerson.is_key.desc(), ContactPerson.id))).scalars())


def _same_name(a: str, b: str) -> bool:
    return fold_width(a).strip().casefold() == fold_width(b).strip().casefold()


async def duplicate_contacts(session: AsyncSession, viewer: Viewer, customer_id: int, *, name: str,
                             mobile: str | None = None) -> list[ContactPerson]:
    """The duplicates rule in the module docstring."""
    digits = phone_digits(mobile) if mobile else ""
    return [person for person in await contacts_of(session, viewer, customer_id)
            if _same_name(person.name, name)
            or (digits and digits in {phone_digits(n) for n in (person.mobile, person.office_phone) if n})]


def check_name(name: str) -> str:
    name = (name or "").strip()
    if not name:
        raise DomainError(N_("a contact person needs a name"))
    if len(name) > 100:
        raise DomainError(N_("too long: at most {limit} characters"), limit=100)
    return name


def check_length(value: str | None, limit: int) -> str | None:
    """A free text field: stripped, empty is None, longer than `limit` refused."""
    value = (value or "").strip()
    if len(value) > limit:
        raise DomainError(N_("too long: at most {limit} characters"), limit=limit)
    return value or None


def check_mobile(mobile: str) -> str:
    mobile = fold_width(mobile or "").strip()
    digits = phone_digits(mobile)
    if not 5 <= len(digits) <= 20 or len(mobile) > 64:
        raise DomainError(N_("“{value}” does not look like a phone number"), value=mobile[:30])
    return mobile


async def add_contact(session: AsyncSession, viewer: Viewer, customer_id: int, *, name: str,
                      title: str | None = None, mobile: str | None = None, birthday: date | None = None,
                      is_key: bool = False, office_phone: str | None = None, email: str | None = None,
                      user_id: int | None = None, origin_key: str | None = None) -> ContactPerson:
    """A new contact person; the same input (`origin_key`) adding it again returns the first one."""
    if (earlier := await replayed(session, ContactPerson, origin_key)) is not None:
        return earlier
    customer = await visible_customer(session, viewer, customer_id)
    name = check_name(name)
    if title is not None and len(title.strip()) > 100:
        raise DomainError(N_("too long: at most {limit} characters"), limit=100)
    person = ContactPerson(customer_id=customer.id, name=name, title=(title or "").strip() or None,
                           mobile=check_mobile(mobile) if mobile else None, birthday=birthday, is_key=is_key,
                           office_phone=check_mobile(office_phone) if office_phone else None,
                           email=check_length(email, 200), origin_key=origin_key)
    session.add(person)
    await session.flush()
    await _changed(session, customer.id)
    audit.record(session, action="create", entity="contact_person", entity_id=person.id, user_id=user_id,
                 changes={"customer_id": customer.id, "name": name})
    return person


async def toggle_key(session: AsyncSession, viewer: Viewer, person_id: int, *,
                     user_id: int | None = None) -> ContactPerson:
    person = await session.get(ContactPerson, person_id)
    if person is None or person.archived_at is not None:
        raise DomainError(N_("that contact person is no longer there"))
    await visible_customer(session, viewer, person.customer_id)
    audit.record(session, action="update", entity="contact_person", entity_id=person.id, user_id=user_id,
                 changes={"is_key": [person.is_key, not person.is_key]})
    person.is_key = not person.is_key
    return person


CONTACT_FIELDS = ("name", "title", "mobile", "birthday")


async def _editable(session: AsyncSession, viewer: Viewer, person_id: int) -> ContactPerson:
    person = await session.get(ContactPerson, person_id)
    if person is None or person.archived_at is not None:
        raise DomainError(N_("that contact person is no longer there"))
    await visible_customer(session, viewer, person.customer_id)
    return person


async def update_contact(session: AsyncSession, viewer: Viewer, person_id: int, *, user_id: int | None = None,
                         today: date | None = None, **values: object) -> ContactPerson:
    """Change a contact's name, title, mobile or birthday (checked as when adding; a birthday is not in the
    future); audited."""
    person = await _editable(session, viewer, person_id)
    if values.get("birthday") is not None and values["birthday"] > (today or utcnow().date()):
        raise DomainError(N_("a birthday cannot be in the future"))
    if set(values) - set(CONTACT_FIELDS):
        raise ValueError(f"not editable: {sorted(set(values) - set(CONTACT_FIELDS))}")
    if "name" in values:
        values["name"] = check_name(values["name"])
    if values.get("title") is not None:
        values["title"] = str(values["title"]).strip() or None
        if values["title"] and len(values["title"]) > 100:
            raise DomainError(N_("too long: at most {limit} characters"), limit=100)
    if values.get("mobile"):
        values["mobile"] = check_mobile(values["mobile"])
    changes = {k: [str(getattr(person, k)) if getattr(person, k) else None, str(v) if v else None]
               for k, v in values.items() if getattr(person, k) != v}
    for key, value in values.items():
        setattr(person, key, value)
    if changes:
        await _changed(session, person.customer_id)
        audit.record(session, action="update", entity="contact_person", entity_id=person.id, user_id=user_id,
                     changes=changes)
    return person


async def archive_contact(session: AsyncSession, viewer: Viewer, person_id: int, *,
                          user_id: int | None = None) -> ContactPerson:
    """Archive, never delete: the person leaves the card and the search; past records keep pointing at them."""
    person = await _editable(session, viewer, person_id)
    person.archived_at = utcnow()
    await _changed(session, person.customer_id)
    audit.record(session, action="archive", entity="contact_person", entity_id=person.id, user_id=user_id)
    return person
