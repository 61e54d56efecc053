"""Rule "every Telegram update is applied at most once".

Telegram delivers an update again when the bot did not confirm it: after a crash in long polling (the
offset is confirmed only once the update's transaction committed, bot.polling) or when a webhook call
failed. Inside the update's own transaction, `handled_before` skips a redelivered id at the start and
`first_time` records the id at the end (so an update that only reads takes no write lock). On SQLite an
update that wrote nothing has its id recorded a moment later with others (`record_many`, by
bot.ledger): nothing is lost with it but a repeated reply. Rows are kept `KEEP` (Telegram redelivers for
24 hours); `forget_old` drops older ones.

Rule "a redelivered update still moves its conversation on": conversation state (Redis) is written only
after the update's commit, so a process killed between the two kept the update's rows but lost its
conversation change — and its redelivery was skipped, so the rep's next message was read in the old state
(a second note for a call already saved). The change is kept with the id (`conversation`, from
bot.fsm.pack) and `handled_before` returns it, for the caller to write again.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession

from models import HandledUpdate, utcnow

KEEP = timedelta(days=3)


NOT_BEFORE = object()  # handled_before: the update was not handled before


async def handled_before(session: AsyncSession, update_id: int) -> object:
    """NOT_BEFORE when this update id was not handled (and committed) before; else the conversation change
    it made then (None for none), to be written again."""
    from sqlalchemy import select

    row = (await session.execute(select(HandledUpdate.update_id, HandledUpdate.conversation)
                                 .where(HandledUpdate.update_id == update_id))).first()
    return NOT_BEFORE if row is None else row.conversation


async def highest(session: AsyncSession) -> int:
    """The highest update id handled (0 when none): where a Bot API stand-in (the sandbox's) must go on
    counting after a restart, or its first updates would be taken for redeliveries and skipped."""
    from sqlalchemy import func, select

    return await session.scalar(select(func.max(HandledUpdate.update_id))) or 0


async def first_time(session: AsyncSession, update_id: int, conversation: str | None = None) -> bool:
    """Record `update_id` as handled by this transaction, with the conversation change it made; False when
    it was handled before."""
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    statement = (insert(HandledUpdate).values(update_id=update_id, handled_at=utcnow(), conversation=conversation)
                 .on_conflict_do_nothing().returning(HandledUpdate.update_id))
    return (await session.execute(statement)).scalar() is not None


async def record_many(session: AsyncSession, update_ids: dict[int, str | None]) -> None:
    """Record ids of updates that wrote nothing, handled a moment ago (bot.ledger), each with its
    conversation change, in one statement."""
    if not update_ids:
        return
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    now = utcnow()
    await session.execute(insert(HandledUpdate).on_conflict_do_nothing(),
                          [{"update_id": update_id, "handled_at": now, "conversation": update_ids[update_id]}
                           for update_id in sorted(update_ids)])


async def forget_old(session: AsyncSession, now: datetime | None = None) -> int:
    """Drop the ids of updates handled more than KEEP ago; returns how many."""
    result = await session.execute(delete(HandledUpdate).where(HandledUpdate.handled_at < (now or utcnow()) - KEEP))
    return result.rowcount or 0
