"""A customer's transaction roll-ups and last contact always agree with the rows they summarise."""

from datetime import UTC, date, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from models import AuditLog, Customer, Purchase, Stage, utcnow
from services import rollups
from services.customers import create_customer
from services.importer import import_records
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


ROLLUP_COLUMNS = (Customer.id, Customer.txn_count, Customer.txn_amount_cents, Customer.first_txn_on,
                  Customer.last_txn_on, Customer.purchase_gap_days, Customer.last_contact_at, Customer.stage)

# A customer's history: (customer, days before today, amount in cents, voided); then an ERP batch of
# (customer, days before today, amount, order) where order None has no 订单号, an order below the history's
# length re-sends that stored order (a correction, maybe moved to another customer or back-dated) and a
# higher one is a new order number.
history_rows = st.lists(st.tuples(st.integers(0, 2), st.integers(0, 120), st.integers(1, 10**7), st.booleans()),
                        max_size=14)
batch_rows = st.lists(st.tuples(st.integers(0, 2), st.integers(0, 120), st.integers(1, 10**7),
                                st.one_of(st.none(), st.integers(0, 30))),
                      min_size=1, max_size=14, unique_by=lambda row: row[3] if row[3] is not None else object())


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(history=history_rows, batch=batch_rows)
async def test_an_erp_batch_leaves_the_rollups_a_full_refresh_would_compute(session, history, batch):
    """The import brings roll-ups forward from a batch's new orders (rollups.add_purchases) and recomputes
    only customers whose orders were corrected: on any history, a full refresh afterwards changes nothing."""
    customers = [await create_customer(session, name=f"批次客户{i}", external_id=f"B{i}",
                                       stage=Stage.interested if i else Stage.quoted_no_response) for i in range(3)]
    ids = [c.id for c in customers]
    for n, (who, days_ago, amount, voided) in enumerate(history):
        session.add(Purchase(customer_id=ids[who], order_no=f"O{n}", purchased_on=TODAY - timedelta(days=days_ago),
                             amount_cents=amount, voided_at=utcnow() if voided else None, source="import"))
    await session.flush()
    await rollups.refresh(session, ids)  # the stored roll-ups are right before the batch
    records = [{"customer_external_id": f"B{who}", "purchased_on": (TODAY - timedelta(days=days_ago)).isoformat(),
                "amount": f"{amount / 100:.2f}",
                **({} if order is None else {"order_no": f"O{order}" if order < len(history) else f"N{order}"})}
               for who, days_ago, amount, order in batch]
    report = await import_records(session, "purchases", records, source={"test": "rollups"}, today=TODAY)
    assert report.ok and report.applied, report.errors
    brought_forward = (await session.execute(select(*ROLLUP_COLUMNS).where(Customer.id.in_(ids)).order_by(Customer.id))).all()
    await rollups.refresh(session, ids)
    recomputed = (await session.execute(select(*ROLLUP_COLUMNS).where(Customer.id.in_(ids)).order_by(Customer.id))).all()
    assert brought_forward == recomputed
    for row in recomputed:  # and the figures are the rows' own
        assert (row.txn_count, row.txn_amount_cents, row.first_txn_on, row.last_txn_on) == \
            await expected_rollups(session, row.id)
    bought = {ids[who] for who, _days, _amount, order in batch if order is None or order >= len(history)}
    assert all(row.stage == Stage.customer for row in recomputed if row.id in bought)  # a buyer is a customer
    await session.rollback()


def test_stored_timestamps_are_read_as_utc():
    from datetime import UTC, datetime, timedelta, timezone

    from models import as_utc

    naive = datetime(2026, 3, 15, 8, 30)  # as SQLite hands a timestamp back
    assert as_utc(naive) == datetime(2026, 3, 15, 8, 30, tzinfo=UTC)
    shanghai = datetime(2026, 3, 15, 16, 30, tzinfo=timezone(timedelta(hours=8)))
    assert as_utc(shanghai) is shanghai and as_utc(None) is None
