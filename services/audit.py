"""Audit log rule: every change a user (or an import) makes is recorded — who, when, what — in the
same transaction as the change itself, so a change and its audit entry exist together or not at all."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession

from models import AuditLog, utcnow


def _jsonable(value: Any) -> Any:
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def record(
    session: AsyncSession,
    *,
    action: str,
    entity: str,
    entity_id: int | None,
    changes: dict[str, Any] | None = None,
    user_id: int | None = None,
    actor: str = "user",
) -> AuditLog:
    entry = AuditLog(
        action=action, entity=entity, entity_id=entity_id, user_id=user_id, actor=actor,
        changes={k: _jsonable(v) for k, v in (changes or {}).items()},
    )
    session.add(entry)
    return entry


async def record_changes(session: AsyncSession, entity: str, changes: list[tuple[int, dict[str, tuple[Any, Any]]]], *,
                         user_id: int | None, actor: str) -> None:
    """One "update" entry per changed record, each with {field: [old, new]}, written in one statement
    (an import changing 100,000 records writes 100,000 entries without 100,000 round trips)."""
    if not changes:
        return
    now = utcnow()
    await session.execute(insert(AuditLog.__table__), [
        {"at": now, "user_id": user_id, "actor": actor, "action": "update", "entity": entity, "entity_id": entity_id,
         "changes": {k: [_jsonable(old), _jsonable(new)] for k, (old, new) in diff.items()}}
        for entity_id, diff in changes])


TRAIL_LIMIT = 30


@dataclass(frozen=True)
class TrailEntry:
    at: datetime
    who: str | None  # the user's name; None for imports and the system
    actor: str
    action: str
    entity: str
    entity_id: int | None
    changes: dict[str, Any]


async def customer_trail(session: AsyncSession, viewer: Any, customer_id: int, *,
                         limit: int = TRAIL_LIMIT) -> tuple[Any, list[TrailEntry]]:
    """Rule "admins read the audit trail": every change to a customer and to what belongs to it (contacts,
    visits and calls, orders, feedback), newest first. Returns (customer, entries)."""
    from sqlalchemy import and_, or_, select

    from models import ContactPerson, Customer, Feedback, Interaction, Purchase, Role, User
    from services.messages import N_, DomainError

    if viewer is None or viewer.role != Role.admin:
        raise DomainError(N_("only admins can read the audit trail"))
    customer = await session.get(Customer, customer_id)
    if customer is None:
        raise DomainError(N_("customer not found"))
    owned = [("customer", [customer.id])]
    for entity, model in (("contact_person", ContactPerson), ("interaction", Interaction), ("purchase", Purchase),
                          ("feedback", Feedback)):
        ids = list((await session.execute(select(model.id).where(model.customer_id == customer.id))).scalars())
        if ids:
            owned.append((entity, ids))
    condition = or_(*(and_(AuditLog.entity == entity, AuditLog.entity_id.in_(ids)) for entity, ids in owned))
    rows = (await session.execute(select(AuditLog, User.name).outerjoin(User, User.id == AuditLog.user_id)
                                  .where(condition).order_by(AuditLog.at.desc(), AuditLog.id.desc())
                                  .limit(limit))).all()
    return customer, [TrailEntry(e.at, name, e.actor, e.action, e.entity, e.entity_id, e.changes or {})
                      for e, name in rows]
