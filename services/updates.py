"""Rule "every Telegram update is applied at most once".

Telegram delivers an update again when the bot did not confirm it: after a crash in long polling (the
offset is confirmed only once the update's transaction committed, bot.polling) or when a webhook call
failed. `first_time` is called inside the update's own transaction: it records the update id, and a
redelivered id finds its row and is skipped. Rows are kept `KEEP` (Telegram redelivers for 24 hours);
`forget_old` drops older ones.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession

from models import HandledUpdate, utcnow

KEEP = timedelta(days=3)


async def first_time(session: AsyncSession, update_id: int) -> bool:
    """Record `update_id` as handled by this transaction; False when it was handled before."""
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    statement = (insert(HandledUpdate).values(update_id=update_id, handled_at=utcnow())
                 .on_conflict_do_nothing().returning(HandledUpdate.update_id))
    return (await session.execute(statement)).scalar() is not None


async def forget_old(session: AsyncSession, now: datetime | None = None) -> int:
    """Drop the ids of updates handled more than KEEP ago; returns how many."""
    result = await session.execute(delete(HandledUpdate).where(HandledUpdate.handled_at < (now or utcnow()) - KEEP))
    return result.rowcount or 0
