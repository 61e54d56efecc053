"""A customer's transaction roll-ups and last contact always agree with the rows they summarise."""

from datetime import UTC, date, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from models import AuditLog, Customer, Purchase, Stage
from services.customers import create_customer
from services.interactions import log_interaction
from services.purchases import correct_purchase, record_purchase, void_purchase

TODAY = date(2026, 3, 20)


async def expected_rollups(session, customer_id):
    live = (Purchase.customer_id == customer_id) & Purchase.voided_at.is_(None)
    row = (await session.execute(select(func.count(Purchase.id), func.coalesce(func.sum(Purchase.amount_cents), 0),
                                        func.min(Purchase.purchased_on), func.max(Purchase.purchased_on))
                                 .where(live))).one()
    return tuple(row)


async def actual_rollups(session, customer_id):
    c = await session.get(Customer, customer_id)
    return c.txn_count, c.txn_amount_cents, c.first_txn_on, c.last_txn_on


async def test_recording_a_purchase_updates_the_customer_in_the_same_transaction(session):
    customer = await create_customer(session, name="广州市人易软件技术有限公司", short_name="人易软件")
    await record_purchase(session, customer_id=customer.id, purchased_on=date(2026, 1, 5), amount_cents=500_00,
                          today=TODAY)
    await record_purchase(session, customer_id=customer.id, purchased_on=date(2026, 3, 1), amount_cents=1_200_00,
                          today=TODAY)
    assert await actual_rollups(session, customer.id) == (2, 1_700_00, date(2026, 1, 5), date(2026, 3, 1))
    assert customer.stage == Stage.customer  # a purchase turns a prospect into a customer
    await session.rollback()  # nothing was committed: the roll-ups go with the rows
    assert await session.scalar(select(func.count(Customer.id))) == 0


async def test_correcting_and_voiding_a_purchase_keeps_the_rollups_true_and_the_history(session):
    customer = await create_customer(session, name="恒达物流有限公司")
    first = await record_purchase(session, customer_id=customer.id, purchased_on=date(2026, 1, 5),
                                  amount_cents=500_00, today=TODAY)
    second = await record_purchase(session, customer_id=customer.id, purchased_on=date(2026, 2, 5),
                                   amount_cents=800_00, today=TODAY)
    await correct_purchase(session, first.id, amount_cents=550_00, purchased_on=date(2026, 1, 6), today=TODAY)
    assert await actual_rollups(session, customer.id) == (2, 1_350_00, date(2026, 1, 6), date(2026, 2, 5))
    await void_purchase(session, second.id, reason="录错了")
    assert await actual_rollups(session, customer.id) == (1, 550_00, date(2026, 1, 6), date(2026, 1, 6))
    # The voided purchase is still there, and the audit log holds what the corrected one said before.
    assert await session.get(Purchase, second.id) is not None
    edit = (await session.execute(select(AuditLog).where(AuditLog.entity == "purchase", AuditLog.action == "update")))
    assert edit.scalar_one().changes["amount_cents"] == [500_00, 550_00]


async def test_any_logged_interaction_moves_the_last_contact(session):
    customer = await create_customer(session, name="嘉禾食品有限公司")
    now = datetime.now(UTC)
    await log_interaction(session, customer_id=customer.id, kind="call", occurred_at=now - timedelta(days=3))
    await log_interaction(session, customer_id=customer.id, kind="visit", occurred_at=now - timedelta(days=10))
    await session.refresh(customer)
    assert abs(customer.last_contact_at - (now - timedelta(days=3))) < timedelta(seconds=1)


operations = st.lists(
    st.tuples(st.sampled_from(["add", "correct", "void"]), st.integers(0, 2), st.integers(1, 10**9),
              st.integers(0, 700)),
    min_size=1, max_size=12,
)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=operations)
async def test_rollups_match_the_rows_after_any_sequence_of_changes(session, ops):
    customers = [await create_customer(session, name=f"客户{i}") for i in range(3)]
    purchases: list[Purchase] = []
    for op, who, amount, days_ago in ops:
        day = TODAY - timedelta(days=days_ago)
        if op == "add" or not purchases:
            purchases.append(await record_purchase(session, customer_id=customers[who].id, purchased_on=day,
                                                   amount_cents=amount, today=TODAY))
        elif op == "correct":
            target = purchases[amount % len(purchases)]
            if target.voided_at is None:
                await correct_purchase(session, target.id, amount_cents=amount // 3, purchased_on=day, today=TODAY)
        else:
            target = purchases[amount % len(purchases)]
            if target.voided_at is None:
                await void_purchase(session, target.id)
    for customer in customers:
        assert await actual_rollups(session, customer.id) == await expected_rollups(session, customer.id)
    await session.rollback()


def test_stored_timestamps_are_read_as_utc():
    from datetime import UTC, datetime, timedelta, timezone

    from models import as_utc

    naive = datetime(2026, 3, 15, 8, 30)  # as SQLite hands a timestamp back
    assert as_utc(naive) == datetime(2026, 3, 15, 8, 30, tzinfo=UTC)
    shanghai = datetime(2026, 3, 15, 16, 30, tzinfo=timezone(timedelta(hours=8)))
    assert as_utc(shanghai) is shanghai and as_utc(None) is None
