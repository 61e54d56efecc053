"""API tokens (the ERP sync API's keys): made, listed and revoked by an admin on the command line, checked on
every API request.

Rules:
- A token is shown once, when it is made: `fcrm_<id>_<43 random characters>` (256 bits). The database keeps
  only HMAC-SHA256(server secret, token): a copy of the database alone neither shows a token nor lets anyone
  test guesses against it (the secret is not in the database: API_SECRET, or a file in DATA_DIR).
- Scope "read" may read; "write" may also create and update. A token may be tied to a person: it then sees
  only what that person sees (services.access); untied, it sees every customer.
- A revoked token is refused from the next request on; revoking keeps the row (who had access, and when).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from models import ApiToken, utcnow
from services.messages import N_, DomainError

SCOPES = ("read", "write")
PREFIX = "fcrm"
_SHAPE = re.compile(rf"^{PREFIX}_(\d{{1,12}})_([A-Za-z0-9_-]{{20,100}})$")
LAST_USED_EVERY = timedelta(minutes=5)  # last_used_at is written at most this often per token


def digest(secret: bytes, token: str) -> str:
    return hmac.new(secret, token.encode(), hashlib.sha256).hexdigest()


async def create_token(session: AsyncSession, secret: bytes, name: str, *, scope: str = "read",
                       user_id: int | None = None) -> tuple[ApiToken, str]:
    """A new token named `name`; returns the row and the token itself (shown once, never stored)."""
    name = (name or "").strip()
    if not 1 <= len(name) <= 64:
        raise DomainError(N_("a token's name has 1 to 64 characters"))
    if scope not in SCOPES:
        raise DomainError(N_("the scope must be read or write"))
    if await session.scalar(select(ApiToken.id).where(ApiToken.name == name)) is not None:
        raise DomainError(N_("there is already a token named “{name}”; revoke it or choose another name"), name=name)
    row = ApiToken(name=name, scope=scope, digest="", user_id=user_id)
    session.add(row)
    await session.flush()
    token = f"{PREFIX}_{row.id}_{secrets.token_urlsafe(32)}"
    row.digest = digest(secret, token)
    return row, token


async def list_tokens(session: AsyncSession) -> list[ApiToken]:
    return list((await session.execute(select(ApiToken).order_by(ApiToken.id))).scalars())


async def revoke_token(session: AsyncSession, name: str) -> ApiToken:
    row = await session.scalar(select(ApiToken).where(ApiToken.name == name))
    if row is None:
        raise DomainError(N_("there is no token named “{name}”"), name=name)
    if row.revoked_at is None:
        row.revoked_at = utcnow()
    return row


async def check_token(session: AsyncSession, secret: bytes, presented: str | None) -> ApiToken | None:
    """The live token this is, or None (malformed, unknown, wrong, revoked). Compared in constant time."""
    match = _SHAPE.match(presented or "")
    if match is None:
        return None
    row = await session.get(ApiToken, int(match.group(1)))
    if row is None or row.revoked_at is not None or not hmac.compare_digest(row.digest, digest(secret, presented)):
        return None
    now = utcnow()
    if row.last_used_at is None or now - row.last_used_at > LAST_USED_EVERY:
        row.last_used_at = now
    return row
