"""The limits and rules the bot enforces live in services, so every front end (bot, CLI, the coming API)
gets them: each is checked here at the service, without the bot."""

from __future__ import annotations

from datetime import date

import pytest

from models.activity import FEEDBACK_PRODUCT_LIMIT, NOTE_LIMIT, PRODUCTS_LIMIT
from services.customers import create_customer
from services.feedback import record_feedback
from services.interactions import log_interaction
from services.messages import DomainError
from services.purchases import record_purchase


async def test_an_order_needs_an_amount_above_zero(session):
    customer = await create_customer(session, name="甲公司")
    with pytest.raises(DomainError) as refused:
        await record_purchase(session, customer_id=customer.id, purchased_on=date(2026, 1, 5), amount_cents=0,
                              today=date(2026, 1, 6))
    assert refused.value.problem.message == "An order needs an amount above zero."


async def test_what_was_ordered_has_a_limit(session):
    customer = await create_customer(session, name="甲公司")
    with pytest.raises(DomainError) as refused:
        await record_purchase(session, customer_id=customer.id, purchased_on=date(2026, 1, 5), amount_cents=100,
                              products="x" * (PRODUCTS_LIMIT + 1), today=date(2026, 1, 6))
    assert refused.value.problem.params == {"limit": PRODUCTS_LIMIT}
    ok = await record_purchase(session, customer_id=customer.id, purchased_on=date(2026, 1, 5), amount_cents=100,
                               products="  x" * 10 + " ", today=date(2026, 1, 6))
    assert ok.products == ("  x" * 10).strip()


async def test_a_note_has_a_limit(session):
    customer = await create_customer(session, name="甲公司")
    with pytest.raises(DomainError) as refused:
        await log_interaction(session, customer_id=customer.id, kind="call", summary="话" * (NOTE_LIMIT + 1))
    assert refused.value.problem.params == {"limit": NOTE_LIMIT}
    saved = await log_interaction(session, customer_id=customer.id, kind="call", summary="话" * NOTE_LIMIT)
    assert len(saved.summary) == NOTE_LIMIT


async def test_the_feedback_product_fits_its_column(session):
    customer = await create_customer(session, name="甲公司")
    with pytest.raises(DomainError) as refused:
        await record_feedback(session, customer_id=customer.id, kind="suggestion", text="smaller boxes",
                              product="产" * (FEEDBACK_PRODUCT_LIMIT + 1))
    assert refused.value.problem.params == {"limit": FEEDBACK_PRODUCT_LIMIT}
    saved = await record_feedback(session, customer_id=customer.id, kind="suggestion", text="smaller boxes",
                                  product="产" * FEEDBACK_PRODUCT_LIMIT)
    assert len(saved.product) == FEEDBACK_PRODUCT_LIMIT


async def test_a_complaint_goes_to_the_owners_direct_manager_else_to_the_admins(session):
    from models import Role
    from services.feedback import complaint_recipients
    from services.users import add_user

    admin = await add_user(session, name="Admin", role=Role.admin)
    boss = await add_user(session, name="Boss", role=Role.manager, manager_id=admin.id)
    rep = await add_user(session, name="Rep", manager_id=boss.id)
    lone = await add_user(session, name="Lone rep")
    theirs = await create_customer(session, name="甲公司", owner_id=rep.id)
    nobodys = await create_customer(session, name="乙公司")
    by_rep = await record_feedback(session, customer_id=theirs.id, kind="complaint", text="late", user_id=rep.id)
    assert [u.name for u in await complaint_recipients(session, by_rep)] == ["Boss"]
    by_lone = await record_feedback(session, customer_id=nobodys.id, kind="complaint", text="late", user_id=lone.id)
    assert [u.name for u in await complaint_recipients(session, by_lone)] == ["Admin"]
    by_admin = await record_feedback(session, customer_id=nobodys.id, kind="complaint", text="x", user_id=admin.id)
    assert await complaint_recipients(session, by_admin) == []  # nobody is told of their own complaint


async def test_a_lookup_shows_what_the_viewer_may_see_now_even_if_the_index_lags(session):
    from services.access import Viewer, viewer_for
    from services.cards import found_customers
    from services.customers import archive_customer
    from services.lookup import build_index
    from services.users import add_user

    ann = await add_user(session, name="Ann", telegram_id=11)
    bob = await add_user(session, name="Bob", telegram_id=12)
    mine = await create_customer(session, name="广州市人易软件技术有限公司", owner_id=ann.id)
    gone = await create_customer(session, name="广州市人易贸易有限公司", owner_id=ann.id)
    index = await build_index(session)  # then the database moves on, and this index has not heard yet
    mine.owner_id = bob.id
    await archive_customer(session, gone.id)
    await session.flush()
    assert {m.customer_id for m in index.search("人易", await viewer_for(session, ann), 10)} == {mine.id, gone.id}
    assert await found_customers(session, await viewer_for(session, ann), index, "人易", 10) == []
    [found] = await found_customers(session, Viewer.everyone(), index, "人易", 10)  # an admin: as it is now
    assert (found.customer.id, found.owner_name, found.match.why) == (mine.id, "Bob", "name")


async def test_only_managers_and_admins_reassign_a_customer(session):
    from models import Role
    from services.access import viewer_for
    from services.customers import assign_owner
    from services.users import add_user

    boss = await add_user(session, name="Boss", role=Role.manager, telegram_id=21)
    ann = await add_user(session, name="Ann", telegram_id=22, manager_id=boss.id)
    bob = await add_user(session, name="Bob", telegram_id=23, manager_id=boss.id)
    customer = await create_customer(session, name="甲公司", owner_id=ann.id)
    with pytest.raises(DomainError) as refused:
        await assign_owner(session, await viewer_for(session, ann), customer.id, bob.id)  # even their own
    assert refused.value.problem.message == "Only managers can reassign customers."
    assert customer.owner_id == ann.id
    await assign_owner(session, await viewer_for(session, boss), customer.id, bob.id)
    assert customer.owner_id == bob.id
