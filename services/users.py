"""People: adding users, changing roles, disabling.

Rules:
- A Telegram id belongs to at most one user.
- A rep may have a manager, who must be a manager or admin; a manager may not report to themselves.
- Language is one of the supported locales; the time zone a real IANA zone.
- Users are disabled, never deleted (their history keeps pointing at them).
"""

from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from models import Role, User
from services import audit
from services.messages import N_, DomainError

LANGUAGES = ("zh_Hans", "zh_Hant", "en")


def check_timezone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise DomainError(N_("“{value}” is not a time zone; try Asia/Shanghai"), value=name) from None
    return name


async def add_user(session: AsyncSession, *, name: str, role: str = Role.rep, telegram_id: int | None = None,
                   manager_id: int | None = None, language: str = "zh_Hans", timezone: str = "Asia/Shanghai",
                   by_user_id: int | None = None, actor: str = "user") -> User:
    name = (name or "").strip()
    if not name:
        raise DomainError(N_("a user needs a name"))
    if role not in {r.value for r in Role}:
        raise DomainError(N_("the role must be rep, manager or admin"))
    if language not in LANGUAGES:
        raise DomainError(N_("the language must be zh_Hans, zh_Hant or en"))
    check_timezone(timezone)
    if telegram_id is not None and await session.scalar(select(User.id).where(User.telegram_id == telegram_id)):
        raise DomainError(N_("Telegram id {value} already belongs to a user"), value=telegram_id)
    if manager_id is not None:
        manager = await session.get(User, manager_id)
        if manager is None or manager.role not in (Role.manager, Role.admin):
            raise DomainError(N_("the manager must be a user with the manager or admin role"))
    user = User(name=name, role=role, telegram_id=telegram_id, manager_id=manager_id, language=language,
                timezone=timezone)
    session.add(user)
    await session.flush()
    audit.record(session, action="create", entity="user", entity_id=user.id, user_id=by_user_id, actor=actor,
                 changes={"name": name, "role": role, "telegram_id": telegram_id})
    return user


async def find_user(session: AsyncSession, ref: str) -> User:
    """A user by database id, Telegram id or exact name."""
    query = select(User).where(User.name == ref)
    if ref.lstrip("-").isdigit():
        query = select(User).where((User.telegram_id == int(ref)) | (User.id == int(ref)) | (User.name == ref))
    users = list((await session.execute(query)).scalars())
    if not users:
        raise DomainError(N_("no user called “{value}”"), value=ref)
    if len(users) > 1:
        # A Telegram id wins over an internal id that happens to be equal.
        by_tg = [u for u in users if u.telegram_id is not None and str(u.telegram_id) == ref]
        if len(by_tg) == 1:
            return by_tg[0]
        raise DomainError(N_("“{value}” matches several users; use the Telegram id"), value=ref)
    return users[0]


async def set_role(session: AsyncSession, user_id: int, role: str, *, by_user_id: int | None = None,
                   actor: str = "user") -> User:
    if role not in {r.value for r in Role}:
        raise DomainError(N_("the role must be rep, manager or admin"))
    user = await session.get(User, user_id)
    if user is None:
        raise DomainError(N_("no such user"))
    audit.record(session, action="update", entity="user", entity_id=user.id, user_id=by_user_id, actor=actor,
                 changes={"role": [user.role, role]})
    user.role = role
    return user


async def set_active(session: AsyncSession, user_id: int, active: bool, *, by_user_id: int | None = None,
                     actor: str = "user") -> User:
    user = await session.get(User, user_id)
    if user is None:
        raise DomainError(N_("no such user"))
    audit.record(session, action="update", entity="user", entity_id=user.id, user_id=by_user_id, actor=actor,
                 changes={"active": [user.active, active]})
    user.active = active
    return user


async def set_language(session: AsyncSession, user_id: int, language: str) -> User:
    """A user's own choice of language overrides the one Telegram reports."""
    if language not in LANGUAGES:
        raise DomainError(N_("the language must be zh_Hans, zh_Hant or en"))
    user = await session.get(User, user_id)
    if user is None:
        raise DomainError(N_("no such user"))
    audit.record(session, action="update", entity="user", entity_id=user.id, user_id=user.id,
                 changes={"language": [user.language, language]})
    user.language = language
    return user
