"""Getting into the bot: nobody sees data until an admin (or an invite) lets them in.

Rules:
- The first admins come from ADMIN_IDS (they become admins the first time they /start) or from
  `python main.py user add … --role admin`.
- Admins invite anyone (rep, manager, admin); managers invite reps into their own team; reps invite
  nobody.
- An invite is a single-use code carried by a deep link (`/start <code>`), valid for a limited time
  (7 days unless said otherwise), carrying the new user's role and manager.
- Someone who already has an account keeps it: an invite neither changes their role nor gets used up.
"""

from __future__ import annotations

import secrets
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from models import Invite, Role, User, as_utc, utcnow
from services import audit
from services.messages import N_, DomainError
from services.users import add_user

INVITE_DAYS = 7


async def create_invite(session: AsyncSession, *, by: User, role: str = Role.rep, manager_id: int | None = None,
                        valid_for: timedelta = timedelta(days=INVITE_DAYS)) -> Invite:
    if role not in {r.value for r in Role}:
        raise DomainError(N_("the role must be rep, manager or admin"))
    if not by.active or by.role == Role.rep:
        raise DomainError(N_("only admins and managers can invite people"))
    if by.role == Role.manager:
        if role != Role.rep:
            raise DomainError(N_("managers can invite reps only"))
        manager_id = by.id  # into their own team
    if manager_id is not None:
        manager = await session.get(User, manager_id)
        if manager is None or manager.role not in (Role.manager, Role.admin):
            raise DomainError(N_("the manager must be a user with the manager or admin role"))
    invite = Invite(code=secrets.token_urlsafe(12), role=role, manager_id=manager_id, created_by_id=by.id,
                    expires_at=utcnow() + valid_for)
    session.add(invite)
    await session.flush()
    audit.record(session, action="create", entity="invite", entity_id=invite.id, user_id=by.id,
                 changes={"role": role, "manager_id": manager_id})
    return invite


async def redeem_invite(session: AsyncSession, code: str, *, telegram_id: int, name: str,
                        language: str, timezone: str) -> User:
    """A new user from an invite code; an existing user is returned as they are."""
    existing = await session.scalar(select(User).where(User.telegram_id == telegram_id))
    if existing is not None:
        return existing
    invite = await session.scalar(select(Invite).where(Invite.code == code))
    if invite is None:
        raise DomainError(N_("this invitation is not valid"))
    if invite.used_at is not None:
        raise DomainError(N_("this invitation has already been used"))
    now = utcnow()
    if as_utc(invite.expires_at) < now:
        raise DomainError(N_("this invitation has expired"))
    # Used up atomically: of two people redeeming one code at the same moment, the database lets one
    # UPDATE match (the other waits for that commit and then finds used_at set).
    claimed = await session.execute(update(Invite).where(Invite.id == invite.id, Invite.used_at.is_(None))
                                    .values(used_at=now).execution_options(synchronize_session=False))
    if claimed.rowcount != 1:
        raise DomainError(N_("this invitation has already been used"))
    user = await add_user(session, name=name or str(telegram_id), role=invite.role, telegram_id=telegram_id,
                          manager_id=invite.manager_id, language=language, timezone=timezone,
                          by_user_id=invite.created_by_id, actor="invite")
    await session.execute(update(Invite).where(Invite.id == invite.id).values(used_by_id=user.id)
                          .execution_options(synchronize_session=False))
    await session.refresh(invite)
    return user


async def admit_configured_admin(session: AsyncSession, *, telegram_id: int, admin_ids: list[int], name: str,
                                 language: str, timezone: str) -> User | None:
    """An ADMIN_IDS person who has no account yet gets an admin account on their first /start."""
    if telegram_id not in admin_ids:
        return None
    existing = await session.scalar(select(User).where(User.telegram_id == telegram_id))
    if existing is not None:
        return existing
    return await add_user(session, name=name or str(telegram_id), role=Role.admin, telegram_id=telegram_id,
                          language=language, timezone=timezone, actor="config")
