"""Property: copies of updates change nothing, wherever they arrive.

Telegram (or a webhook retry, or a second instance) may deliver an update again — at once, or after the
chat's next updates were handled. Two reps do the same random things, each with a customer of their own:
rep A's updates arrive once; rep B's arrive with copies of some of them, later, at random places. Both
must end with the same calls and visits saved and the same conversation step (found by review: a late
copy of a tap once wound the conversation back, and the rep's next message became a second note).
Real dispatcher, on SQLite and PostgreSQL, with memory and Redis conversation state.
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from bot.callbacks import LogCallback
from models import Interaction
from services.customers import create_customer
from services.users import add_user
from tests.botkit import button_update, make_app, person, text_update

REP_A, REP_B = 7301, 7302
_examples = itertools.count()
ACTIONS = st.sampled_from(["call", "visit", "note", "lookup", "cancel"])


@pytest.fixture
async def pair(state_settings, engine):
    app = await make_app(engine, **state_settings)
    async with app.sessions() as session:
        a = await add_user(session, name="甲", telegram_id=REP_A, language="en")
        b = await add_user(session, name="乙", telegram_id=REP_B, language="en")
        mine_a = await create_customer(session, name="上海恒达物流股份有限公司", owner_id=a.id)
        mine_b = await create_customer(session, name="广州人易软件技术有限公司", owner_id=b.id)
        await session.commit()
    await app.sync()
    app.customers = {REP_A: mine_a.id, REP_B: mine_b.id}
    yield app
    await app.dispatcher.storage.close()


def _update(rep: int, action: str, customer_id: int, example: int, n: int):
    sender = person(rep, language="en")
    if action in ("call", "visit"):
        return button_update(sender, LogCallback(kind=action, id=customer_id).pack())
    if action == "note":
        return text_update(sender, f"note {example}-{n}")
    if action == "lookup":
        return text_update(sender, "有限公司")  # the same text for both: a lookup, or the note if one is asked for
    return text_update(sender, "/cancel")


async def _outcome(app, rep: int, since: int) -> tuple:
    async with app.sessions() as session:
        saved = (await session.execute(select(Interaction.kind, Interaction.summary)
                                       .where(Interaction.customer_id == app.customers[rep], Interaction.id > since)
                                       .order_by(Interaction.id))).all()
    context = app.dispatcher.fsm.get_context(bot=app.bot, chat_id=rep, user_id=rep)
    return [tuple(row) for row in saved], await context.get_state()


@settings(max_examples=12, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(actions=st.lists(ACTIONS, min_size=2, max_size=8),
       copies=st.lists(st.tuples(st.integers(0, 7), st.integers(0, 9)), max_size=6))
async def test_copies_of_updates_arriving_anywhere_change_nothing(pair, actions, copies):
    app, example = pair, next(_examples)
    for rep in (REP_A, REP_B):
        await app.send(text_update(person(rep, language="en"), "/cancel"))
    async with app.sessions() as session:
        since = await session.scalar(select(func.coalesce(func.max(Interaction.id), 0)))
    once = [_update(REP_A, action, app.customers[REP_A], example, n) for n, action in enumerate(actions)]
    originals = [_update(REP_B, action, app.customers[REP_B], example, n) for n, action in enumerate(actions)]
    # Rep B's stream: each original, and copies of earlier updates placed `later` steps after them.
    stream = list(originals)
    for which, later in copies:
        which %= len(originals)
        stream.insert(min(stream.index(originals[which]) + 1 + later, len(stream)), originals[which])
    for update in once:
        await app.send(update)
    for update in stream:
        await app.send(update)
    assert await _outcome(app, REP_A, since) == await _outcome(app, REP_B, since), (actions, copies)
