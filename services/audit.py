"""Audit log rule: every change a user (or an import) makes is recorded — who, when, what — in the
same transaction as the change itself, so a change and its audit entry exist together or not at all."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from models import AuditLog


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
