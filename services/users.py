"""People: adding users, changing roles, disabling.

Rules:
- A Telegram id belongs to at most one user.
- A rep may have a manager, who must be a manager or admin; a manager may not report to themselves.
- Language is one of the supported locales; the time zone a real IANA zone.
- Working hours are one span within a local day (start before end, at least an hour); reminders and
  digests are delivered inside them. Work days are ISO weekdays (1 = Monday … 7 = Sunday), at least one.
- Users are disabled, never deleted (their history keeps pointing at them).
- A team group chat is bound to a manager (or admin) by an admin only, from inside that group; the
  weekly team report then goes to the group instead of the manager's private chat. One group serves one
  team at a time; binding it to another manager moves it.
"""

from __future__ import annotations

import re
from datetime import time
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from models import Role, User
from services import audit
from services.messages import N_, DomainError
from services.route import NAVIGATORS

LANGUAGES = ("zh_Hans", "zh_Hant", "en")


_ZONES_BY_LOWER: dict[str, str] = {}
_HOURS = re.compile(r"^\s*(\d{1,2})(?:[:：.](\d{2}))?\s*(?:-|–|—|~|～|到|至|to)\s*(\d{1,2})(?:[:：.](\d{2}))?\s*$")


def check_timezone(name: str) -> str:
    """The canonical IANA name for `name` (any letter case: "asia/shanghai" → "Asia/Shanghai")."""
    name = (name or "").strip()
    if len(name) > 64:  # the longest IANA name is 32 characters
        raise DomainError(N_("“{value}” is not a time zone; try Asia/Shanghai"), value=name[:20] + "…")
    if not _ZONES_BY_LOWER:
        _ZONES_BY_LOWER.update({zone.lower(): zone for zone in available_timezones()})
    canonical = _ZONES_BY_LOWER.get(name.lower())
    if canonical is None:
        try:
            ZoneInfo(name)
            canonical = name
        except (ZoneInfoNotFoundError, ValueError):
            raise DomainError(N_("“{value}” is not a time zone; try Asia/Shanghai"), value=name) from None
    return canonical


def parse_working_hours(text: str) -> tuple[time, time]:
    """Working hours as people type them: 9-18, 09:00-18:00, 8:30~17:30, 9点到18点; 24 as the end = 23:59."""
    match = _HOURS.match((text or "").replace("点", ""))
    if not match:
        raise DomainError(N_("Write the hours as start-end, e.g. 9-18 or 08:30-17:30"))
    try:
        start = time(int(match[1]), int(match[2] or 0))
        end = time(int(match[3]), int(match[4] or 0)) if int(match[3]) < 24 else time(23, 59)
    except ValueError:
        raise DomainError(N_("Write the hours as start-end, e.g. 9-18 or 08:30-17:30")) from None
    return check_working_hours(start, end)


def check_working_hours(start: time, end: time) -> tuple[time, time]:
    if (end.hour * 60 + end.minute) - (start.hour * 60 + start.minute) < 60:
        raise DomainError(N_("Working hours must start before they end, and last at least an hour"))
    return start, end


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
    timezone = check_timezone(timezone)
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


async def set_navigator(session: AsyncSession, user_id: int, navigator: str | None) -> User:
    """The map app /route's links open for this user (services.route.NAVIGATORS); None: by language."""
    if navigator is not None and navigator not in NAVIGATORS:
        raise DomainError(N_("no such map app"))
    user = await _own(session, user_id)
    audit.record(session, action="update", entity="user", entity_id=user.id, user_id=user.id,
                 changes={"navigator": [user.navigator, navigator]})
    user.navigator = navigator
    return user


VISIT_MINUTES = (5, 240)  # the shortest and longest visit a user may set


async def set_visit_minutes(session: AsyncSession, user_id: int, minutes: int | None) -> User:
    """Visit-length rule: how long /route plans for each customer visit of this user, 5–240 minutes; None:
    the server's setting (ROUTE_VISIT_MINUTES) for everyone."""
    if minutes is not None and not VISIT_MINUTES[0] <= minutes <= VISIT_MINUTES[1]:
        raise DomainError(N_("a visit must take {low} to {high} minutes"), low=VISIT_MINUTES[0], high=VISIT_MINUTES[1])
    user = await _own(session, user_id)
    audit.record(session, action="update", entity="user", entity_id=user.id, user_id=user.id,
                 changes={"visit_minutes": [user.visit_minutes, minutes]})
    user.visit_minutes = minutes
    return user


async def _own(session: AsyncSession, user_id: int) -> User:
    user = await session.get(User, user_id)
    if user is None:
        raise DomainError(N_("no such user"))
    return user


async def set_timezone(session: AsyncSession, user_id: int, timezone: str) -> User:
    """The user's time zone: "due today", digests and working hours are computed in it."""
    timezone = check_timezone(timezone)
    user = await _own(session, user_id)
    audit.record(session, action="update", entity="user", entity_id=user.id, user_id=user.id,
                 changes={"timezone": [user.timezone, timezone]})
    user.timezone = timezone
    return user


async def set_working_hours(session: AsyncSession, user_id: int, start: time, end: time) -> User:
    """Working-hours rule (module docstring): nothing is delivered to the user outside them."""
    start, end = check_working_hours(start, end)
    user = await _own(session, user_id)
    audit.record(session, action="update", entity="user", entity_id=user.id, user_id=user.id,
                 changes={"work_start": [str(user.work_start), str(start)], "work_end": [str(user.work_end), str(end)]})
    user.work_start, user.work_end = start, end
    return user


async def toggle_work_day(session: AsyncSession, user_id: int, weekday: int) -> User:
    """Add or remove one ISO weekday from the user's work days; the last one cannot be removed."""
    if not 1 <= weekday <= 7:
        raise DomainError(N_("no such weekday"))
    user = await _own(session, user_id)
    days = set(user.work_days)
    days ^= {str(weekday)}
    if not days:
        raise DomainError(N_("Keep at least one work day"))
    new = "".join(sorted(days))
    audit.record(session, action="update", entity="user", entity_id=user.id, user_id=user.id,
                 changes={"work_days": [user.work_days, new]})
    user.work_days = new
    return user


async def bind_team_chat(session: AsyncSession, admin: User, manager_id: int, chat_id: int | None) -> User:
    """Team-chat rule (module docstring). `chat_id=None` unbinds."""
    from models import Role as Roles

    if admin.role != Roles.admin:
        raise DomainError(N_("only an admin can bind a team chat"))
    if chat_id is not None and chat_id > 0:
        raise DomainError(N_("a team chat must be a group"))
    manager = await session.get(User, manager_id)
    if manager is None or manager.role not in (Roles.manager, Roles.admin) or not manager.active:
        raise DomainError(N_("the manager must be a user with the manager or admin role"))
    if chat_id is not None:
        for other in (await session.execute(select(User).where(User.team_chat_id == chat_id))).scalars():
            other.team_chat_id = None
    audit.record(session, action="update", entity="user", entity_id=manager.id, user_id=admin.id,
                 changes={"team_chat_id": [manager.team_chat_id, chat_id]})
    manager.team_chat_id = chat_id
    return manager


async def unbind_chat(session: AsyncSession, admin: User, chat_id: int) -> int:
    """Stop sending team reports to this group; returns how many teams it served (0 or 1)."""
    from models import Role as Roles

    if admin.role != Roles.admin:
        raise DomainError(N_("only an admin can bind a team chat"))
    managers = list((await session.execute(select(User).where(User.team_chat_id == chat_id))).scalars())
    for manager in managers:
        audit.record(session, action="update", entity="user", entity_id=manager.id, user_id=admin.id,
                     changes={"team_chat_id": [chat_id, None]})
        manager.team_chat_id = None
    return len(managers)
