"""Who may see which customers.

Rules (docs/architecture.md, "Where rules live"):
- an admin sees every customer;
- a manager sees the customers of their team (themselves and every user below them, at any depth) and
  unassigned customers, so they can assign them;
- a rep sees their own customers, and unassigned ones when the admin allows it (REPS_SEE_UNASSIGNED);
- a disabled user sees nothing; archived customers are never shown in daily use.
The same `Viewer` is applied inside the lookup index (before any top-k cut) and in every query.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from models import Role, User


@dataclass(frozen=True)
class Viewer:
    user_id: int | None
    role: str
    owners: frozenset[int] | None  # None: every owner
    unassigned: bool

    @classmethod
    def everyone(cls) -> Viewer:
        """The CLI / system view: every customer."""
        return cls(None, Role.admin, None, True)

    def can_see(self, owner_id: int | None) -> bool:
        if owner_id is None:
            return self.unassigned
        return self.owners is None or owner_id in self.owners


async def team_of(session: AsyncSession, manager_id: int) -> set[int]:
    """The manager and everyone reporting to them, directly or through other managers."""
    team = {manager_id}
    frontier = {manager_id}
    while frontier:
        below = set((await session.execute(select(User.id).where(User.manager_id.in_(frontier)))).scalars())
        frontier = below - team
        team |= below
    return team


async def viewer_for(session: AsyncSession, user: User, *, reps_see_unassigned: bool = True) -> Viewer:
    if not user.active:
        return Viewer(user.id, user.role, frozenset(), False)
    if user.role == Role.admin:
        return Viewer(user.id, user.role, None, True)
    if user.role == Role.manager:
        return Viewer(user.id, user.role, frozenset(await team_of(session, user.id)), True)
    return Viewer(user.id, user.role, frozenset({user.id}), reps_see_unassigned)


async def team_members(session: AsyncSession, viewer: Viewer, *, excluding: int | None = None,
                       limit: int = 40) -> list[User]:
    """The active people whose customers the viewer may see (a manager's team, or everyone for an admin),
    by name then id — sorted here, not by the database, whose collation orders Chinese names differently
    on SQLite and PostgreSQL: whom a customer can be given to, whose slice a report can show."""
    query = select(User).where(User.active.is_(True))
    if viewer.owners is not None:
        query = query.where(User.id.in_(viewer.owners))
    if excluding is not None:
        query = query.where(User.id != excluding)
    return by_name(list((await session.execute(query)).scalars()))[:limit]


def by_name(users: list[User]) -> list[User]:
    """People in one order on every engine: by name (code points), then id."""
    return sorted(users, key=lambda u: (u.name, u.id))


async def narrowed_to(session: AsyncSession, viewer: Viewer, user_id: int) -> tuple[Viewer, User]:
    """A manager's or admin's view reduced to one member of their team (their customers only).
    Reps have no team to narrow to; someone outside the team is refused."""
    from services.messages import N_, DomainError

    member = await session.get(User, user_id)
    if member is None or viewer.role == Role.rep or not viewer.can_see(member.id):
        raise DomainError(N_("that person is not in your team"))
    return Viewer(viewer.user_id, viewer.role, frozenset({member.id}), False), member
