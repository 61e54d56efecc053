"""A double tap, a message sent twice, an update Telegram delivers again: every final step saves once.

Two copies of one input go through the real dispatcher at the same moment (asyncio.gather), as aiogram
handles updates as concurrent tasks: one chat's updates are isolated (SimpleEventIsolation, or Redis
locks with REDIS_URL), writes are keyed by the input they come from (origin_key), and an update id is
applied once (services.updates). Runs on SQLite and PostgreSQL, with memory and Redis state.
"""

from __future__ import annotations

import asyncio
import itertools
import re
from datetime import UTC, datetime

import pytest
from aiogram.types import CallbackQuery, Chat, Message, Update
from sqlalchemy import func, select

from bot.callbacks import FeedbackCallback, LogCallback, NextStepCallback, OrderCallback
from models import Customer, Feedback, Interaction, Invite, Purchase, Role, User
from services.customers import create_customer
from services.users import add_user
from tests.botkit import BOT_USER, button_update, make_app, person, text_update

REP = 5100
_ids = itertools.count(10_000_000)


@pytest.fixture
async def app(state_settings, engine):
    app = await make_app(engine, admin_ids=[5000], **state_settings)
    async with app.sessions() as session:
        rep = await add_user(session, name="王业务", telegram_id=REP, language="en")
        customer = await create_customer(session, name="上海恒达物流股份有限公司", short_name="恒达物流", owner_id=rep.id)
        await session.commit()
    await app.sync()
    app.customer_id = customer.id
    yield app
    await app.dispatcher.storage.close()


async def both(app, *updates: Update) -> None:
    app.recorder.clear()
    await asyncio.gather(*(app.dispatcher.feed_update(app.bot, u) for u in updates))


def two_taps(sender, data: str, message_id: int) -> tuple[Update, Update]:
    """Two taps on the same button of the same bot message (two callback queries, two update ids)."""
    message = Message(message_id=message_id, date=datetime.now(UTC), chat=Chat(id=sender.id, type="private"),
                      from_user=BOT_USER, text="…")
    return tuple(Update(update_id=next(_ids), callback_query=CallbackQuery(
        id=str(next(_ids)), from_user=sender, chat_instance="ci", data=data, message=message)) for _ in range(2))


def sent_twice(sender, text: str) -> tuple[Update, Update]:
    """The same message arriving in two updates (a client resending after a timeout)."""
    message = Message(message_id=next(_ids), date=datetime.now(UTC), chat=Chat(id=sender.id, type="private"),
                      from_user=sender, text=text)
    return Update(update_id=next(_ids), message=message), Update(update_id=next(_ids), message=message)


async def count(app, model) -> int:
    async with app.sessions() as session:
        return await session.scalar(select(func.count()).select_from(model))


async def test_a_double_tap_on_the_order_day_saves_one_order_and_counts_it_once(app):
    rep = person(REP, language="en")
    await app.send(button_update(rep, OrderCallback(step="start", id=app.customer_id).pack()))
    await app.send(text_update(rep, "3"))
    [prompt] = (await app.send(text_update(rep, "pens"))).sent()
    await both(app, *two_taps(rep, OrderCallback(step="day", days_ago=0).pack(), message_id=next(_ids)))
    assert await count(app, Purchase) == 1
    async with app.sessions() as session:
        customer = await session.get(Customer, app.customer_id)
        assert (customer.txn_count, customer.txn_amount_cents) == (1, 300)
    saved = [m for m in app.recorder.sent() if m.text.startswith("Saved")]
    assert len(saved) == 1 and "1 orders" in saved[0].text
    assert len(app.recorder.answers()) == 2  # both taps answered: no spinning button


async def test_a_typed_order_date_sent_twice_saves_one_order(app):
    rep = person(REP, language="en")
    await app.send(button_update(rep, OrderCallback(step="start", id=app.customer_id).pack()))
    await app.send(text_update(rep, "12,800"))
    await app.send(text_update(rep, "a server"))
    await both(app, *sent_twice(rep, "2026-01-05"))
    assert await count(app, Purchase) == 1


async def test_the_same_update_delivered_twice_is_applied_once(app):
    """Telegram redelivers an update after a crash or a failed webhook call: same update id."""
    rep = person(REP, language="en")
    await app.send(button_update(rep, OrderCallback(step="start", id=app.customer_id).pack()))
    await app.send(text_update(rep, "500"))
    await app.send(text_update(rep, "paper"))
    update = text_update(rep, "2026-01-06")
    await both(app, update, update)
    await app.send(update)  # and once more, later
    assert await count(app, Purchase) == 1


async def test_a_visit_note_sent_twice_logs_one_visit(app):
    rep = person(REP, language="en")
    await app.send(button_update(rep, LogCallback(kind="visit", id=app.customer_id).pack()))
    await both(app, *sent_twice(rep, "Met the buyer, wants a quote"))
    assert await count(app, Interaction) == 1
    assert len([m for m in app.recorder.sent() if m.text.startswith("Saved")]) == 1
    # and a double tap on its next-step button sets it once
    async with app.sessions() as session:
        interaction_id = await session.scalar(select(Interaction.id))
    await both(app, *two_taps(rep, NextStepCallback(interaction=interaction_id, days=3).pack(), message_id=next(_ids)))
    async with app.sessions() as session:
        [only] = (await session.execute(select(Interaction))).scalars().all()
        assert only.next_step_on is not None


async def test_feedback_sent_twice_is_recorded_once(app):
    rep = person(REP, language="en")
    await app.send(button_update(rep, FeedbackCallback(step="start", id=app.customer_id).pack()))
    await app.send(button_update(rep, FeedbackCallback(step="kind", value="suggestion").pack()))
    await app.send(button_update(rep, FeedbackCallback(step="skip_product").pack()))
    await app.send(button_update(rep, FeedbackCallback(step="rating", value="4").pack()))
    await both(app, *sent_twice(rep, "Offer a smaller box"))
    assert await count(app, Feedback) == 1


async def test_one_invitation_used_by_two_people_at_once_lets_one_in(app):
    admin = person(5000, "Alice", language="en")
    await app.send(text_update(admin, "/start"))
    [invitation] = (await app.send(text_update(admin, "/invite rep"))).sent()
    code = re.search(r"start=([\w-]+)", invitation.text)[1]
    first, second = person(5201, "甲"), person(5202, "乙")
    await both(app, text_update(first, f"/start {code}"), text_update(second, f"/start {code}"))
    async with app.sessions() as session:
        joined = (await session.execute(select(User).where(User.telegram_id.in_([5201, 5202])))).scalars().all()
        invite = await session.scalar(select(Invite).where(Invite.code == code))
    assert len(joined) == 1 and joined[0].role == Role.rep and invite.used_by_id == joined[0].id
    replies = {m.chat_id: m.text for m in app.recorder.sent()}
    assert set(replies) == {5201, 5202}  # the one let in is welcomed; the other is told, not left waiting


async def test_a_failure_after_the_write_saves_nothing_and_the_conversation_waits_for_the_note_again(app):
    """The confirmation cannot be sent (Telegram times out): the update rolls back, the visit is not saved,
    and the conversation still waits for the note (its state moves only with the commit, bot.fsm)."""
    from aiogram.exceptions import TelegramNetworkError
    from aiogram.methods import SendMessage

    rep = person(REP, language="en")
    await app.send(button_update(rep, LogCallback(kind="call", id=app.customer_id).pack()))
    original = app.recorder.make_request
    failing = {"left": 1}

    async def flaky(bot, method, timeout=None):
        if isinstance(method, SendMessage) and method.text.startswith("Saved") and failing["left"]:
            failing["left"] -= 1
            raise TelegramNetworkError(method=method, message="timed out")
        return await original(bot, method, timeout)

    app.recorder.make_request = flaky
    await app.send(text_update(rep, "Called about the renewal"))
    assert await count(app, Interaction) == 0
    [retry] = (await app.send(text_update(rep, "Called about the renewal"))).sent()
    assert retry.text.startswith("Saved") and await count(app, Interaction) == 1


async def test_a_double_tap_on_the_last_step_creates_one_new_customer(app):
    from bot.callbacks import NewCustomerCallback

    rep = person(REP, language="en")
    await app.send(text_update(rep, "/new 东莞双击测试有限公司"))
    await app.send(button_update(rep, NewCustomerCallback(step="skip_phone").pack()))
    await app.send(button_update(rep, NewCustomerCallback(step="region", value="0").pack()))
    await app.send(button_update(rep, NewCustomerCallback(step="stage", value="interested").pack()))
    await both(app, *two_taps(rep, NewCustomerCallback(step="strategy", value="0").pack(), message_id=next(_ids)))
    async with app.sessions() as session:
        made = (await session.execute(select(Customer).where(Customer.name == "东莞双击测试有限公司"))).scalars().all()
    assert len(made) == 1


async def test_a_contacts_mobile_sent_twice_adds_one_person(app):
    from bot.callbacks import ContactCallback
    from models import ContactPerson

    rep = person(REP, language="en")
    await app.send(button_update(rep, ContactCallback(step="add", id=app.customer_id).pack()))
    await app.send(text_update(rep, "王小明"))
    await app.send(text_update(rep, "采购经理"))
    await both(app, *sent_twice(rep, "138 0013 8000"))
    assert await count(app, ContactPerson) == 1


async def test_an_old_messages_button_in_a_later_order_is_a_new_order(app):
    """The "today" button of a finished order, tapped again at the date step of the next order, saves the
    next order (it is the same message, but another run of the conversation)."""
    rep = person(REP, language="en")
    old_prompt = next(_ids)
    for amount in ("300", "450"):
        await app.send(button_update(rep, OrderCallback(step="start", id=app.customer_id).pack()))
        await app.send(text_update(rep, amount))
        await app.send(text_update(rep, "pens"))
        [tap, _] = two_taps(rep, OrderCallback(step="day", days_ago=0).pack(), message_id=old_prompt)
        await both(app, tap)
    async with app.sessions() as session:
        amounts = sorted((await session.execute(select(Purchase.amount_cents))).scalars())
    assert amounts == [30000, 45000]


async def test_a_crash_between_the_commit_and_the_conversations_write_is_mended_by_the_redelivery(app, monkeypatch):
    """The process dies right after an update's commit, before its conversation change reached the state
    storage (Redis): Telegram delivers the update again, the ledger skips it — and the conversation must
    still move on, or the rep's next message is taken for another note of the same call."""
    import bot.middlewares

    rep = person(REP, language="en")
    written = bot.middlewares.write_pending

    async def died_after_the_commit(storage, pending, update_id=None, *, replay=False):
        """The process died after the commit: the conversation change never reached the state storage."""

    tap = button_update(rep, LogCallback(kind="call", id=app.customer_id).pack())
    monkeypatch.setattr(bot.middlewares, "write_pending", died_after_the_commit)
    await app.send(tap)  # a tap that only moves the conversation (writes nothing)
    monkeypatch.setattr(bot.middlewares, "write_pending", written)
    await app.send(tap)  # delivered again
    note = text_update(rep, "Called, wants samples")
    monkeypatch.setattr(bot.middlewares, "write_pending", died_after_the_commit)
    await app.send(note)  # the call is saved; "no conversation any more" is lost with the process
    monkeypatch.setattr(bot.middlewares, "write_pending", written)
    assert await count(app, Interaction) == 1
    await app.send(note)  # delivered again: the bot never confirmed it
    replies = (await app.send(text_update(rep, "恒达"))).sent()  # the rep's next message: a lookup
    assert await count(app, Interaction) == 1
    assert any("上海恒达物流股份有限公司" in m.text for m in replies)
    assert not any(m.text.startswith("Saved") for m in replies)

    # A tap that wrote nothing has its id written a moment later with others' (SQLite, bot.ledger): its
    # redelivery after that finds the conversation change in the database.
    from models import HandledUpdate

    tap = button_update(rep, LogCallback(kind="call", id=app.customer_id).pack())
    monkeypatch.setattr(bot.middlewares, "write_pending", died_after_the_commit)
    await app.send(tap)
    monkeypatch.setattr(bot.middlewares, "write_pending", written)
    for _ in range(50):
        async with app.sessions() as session:
            if await session.get(HandledUpdate, tap.update_id) is not None:
                break
        await asyncio.sleep(0.1)
    await app.send(tap)
    await app.send(text_update(rep, "Second call: samples arrived"))
    assert await count(app, Interaction) == 2


async def test_a_late_copy_of_an_update_never_winds_the_conversation_back(app):
    """A copy of an update that comes after the chat's next update was handled (a webhook retry, another
    instance, two pollers during a deploy) is skipped and must not write its old conversation step again:
    the tap's "waiting for the note" would come back after the note was saved, and the rep's next message
    would become a second note (found by review)."""
    rep = person(REP, language="en")
    tap = button_update(rep, LogCallback(kind="call", id=app.customer_id).pack())
    await app.send(tap)
    await app.send(text_update(rep, "Called, wants samples"))
    assert await count(app, Interaction) == 1
    await app.send(tap)  # the tap's copy, late
    replies = (await app.send(text_update(rep, "恒达"))).sent()
    assert await count(app, Interaction) == 1
    assert any("上海恒达物流股份有限公司" in m.text for m in replies)
