"""Interactions (交往记录): every contact with a customer, by any channel.

Rules:
- Contact strategy clock: any logged interaction, whatever its channel, counts as a contact — the
  customer's last contact time is refreshed in the same transaction.
- A location makes the interaction a check-in: latitude and longitude must both be given and valid.
  The first check-in at a customer without coordinates gives it the check-in's (so /nearby finds it).
- A "next step" date cannot be before the interaction itself.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from models import Interaction, InteractionKind, utcnow
from models.activity import NOTE_LIMIT
from services import audit, reminders, rollups
from services.customers import get_customer
from services.messages import N_, DomainError
from services.sql import replayed


def check_location(latitude: float | None, longitude: float | None) -> None:
    if (latitude is None) != (longitude is None):
        raise DomainError(N_("a location needs both latitude and longitude"))
    if latitude is not None and not (-90 <= latitude <= 90 and -180 <= longitude <= 180):
        raise DomainError(N_("that is not a place on Earth"))


def check_note(summary: str | None) -> str | None:
    """Rule: a visit or call note is at most NOTE_LIMIT characters."""
    if summary and len(summary) > NOTE_LIMIT:
        raise DomainError(N_("That note is too long: at most {limit} characters."), limit=NOTE_LIMIT)
    return summary


async def visible_interaction(session: AsyncSession, viewer: Any, interaction_id: int) -> Interaction:
    """A logged visit or call the viewer may act on (its customer must be visible to them)."""
    from services.cards import visible_customer

    interaction = await session.get(Interaction, interaction_id)
    if interaction is None:
        raise DomainError(N_("That visit or call is no longer there."))
    await visible_customer(session, viewer, interaction.customer_id)
    return interaction


async def log_interaction(session: AsyncSession, *, customer_id: int, kind: str, user_id: int | None = None,
                          occurred_at: datetime | None = None, summary: str | None = None,
                          outcome: str | None = None, next_step: str | None = None,
                          next_step_on: date | None = None, latitude: float | None = None,
                          longitude: float | None = None, attachments: list[str] | None = None,
                          contact_person_id: int | None = None, actor: str = "user",
                          origin_key: str | None = None) -> Interaction:
    """Log a visit or call; the same input (`origin_key`) logged again returns the first row (one input, one record)."""
    if (earlier := await replayed(session, Interaction, origin_key)) is not None:
        return earlier
    if kind not in {k.value for k in InteractionKind}:
        raise DomainError(N_("no such kind of contact"))
    now = utcnow()
    occurred_at = occurred_at or now
    if occurred_at.tzinfo is None:
        raise ValueError("occurred_at must be timezone-aware")
    if occurred_at > now + timedelta(minutes=5):
        raise DomainError(N_("a contact cannot be in the future"))
    if next_step_on is not None and next_step_on < occurred_at.date() - timedelta(days=1):
        raise DomainError(N_("the next step cannot be before the contact itself"))
    check_location(latitude, longitude)
    check_note(summary)
    customer = await get_customer(session, customer_id)
    interaction = Interaction(customer_id=customer.id, kind=kind, user_id=user_id, occurred_at=occurred_at,
                              summary=summary, outcome=outcome, next_step=next_step, next_step_on=next_step_on,
                              latitude=latitude, longitude=longitude, attachments=attachments or [],
                              contact_person_id=contact_person_id, origin_key=origin_key)
    session.add(interaction)
    if latitude is not None and kind == InteractionKind.visit and customer.latitude is None:
        customer.latitude, customer.longitude = latitude, longitude
        audit.record(session, action="update", entity="customer", entity_id=customer.id, user_id=user_id, actor=actor,
                     changes={"latitude": [None, latitude], "longitude": [None, longitude]})
    await session.flush()
    audit.record(session, action="create", entity="interaction", entity_id=interaction.id, user_id=user_id,
                 actor=actor, changes={"customer_id": customer.id, "kind": kind})
    await rollups.refresh(session, [customer.id])
    await reminders.close_answered(session, customer_ids=[customer.id])
    return interaction


async def set_next_step(session: AsyncSession, interaction_id: int, *, next_step_on: date | None,
                        next_step: str | None = None, user_id: int | None = None) -> Interaction:
    """The rep's explicit "next step" after a contact (a follow-up the reminders will bring back)."""
    interaction = await session.get(Interaction, interaction_id)
    if interaction is None:
        raise DomainError(N_("that contact record no longer exists"))
    if next_step_on is not None and next_step_on < interaction.occurred_at.date() - timedelta(days=1):
        raise DomainError(N_("the next step cannot be before the contact itself"))
    audit.record(session, action="update", entity="interaction", entity_id=interaction.id, user_id=user_id,
                 changes={"next_step_on": [interaction.next_step_on, next_step_on]})
    interaction.next_step_on = next_step_on
    if next_step is not None:
        interaction.next_step = next_step
    return interaction
