"""Customers are archived, never deleted, and every change is audited."""

from datetime import date

import pytest
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from models import AuditLog, Customer, DictionaryEntry, Purchase
from services.customers import (
    active_customers,
    archive_customer,
    create_customer,
    get_customer,
    restore_customer,
    update_customer,
)
from services.messages import DomainError
from services.purchases import record_purchase


async def test_archiving_hides_a_customer_but_keeps_its_history(session):
    customer = await create_customer(session, name="宏图建材有限公司", external_id="C001")
    await record_purchase(session, customer_id=customer.id, purchased_on=date(2025, 5, 1), amount_cents=100_00)
    await session.commit()

    await archive_customer(session, customer.id, reason="客户注销")
    await session.commit()
    assert [c.id for c in await active_customers(session)] == []
    with pytest.raises(DomainError):
        await get_customer(session, customer.id)
    assert len((await session.execute(select(Purchase))).scalars().all()) == 1  # history kept

    await restore_customer(session, customer.id)
    await session.commit()
    assert [c.id for c in await active_customers(session)] == [customer.id]
    actions = [a.action for a in (await session.execute(
        select(AuditLog).where(AuditLog.entity == "customer").order_by(AuditLog.id))).scalars()]
    assert actions == ["create", "archive", "restore"]


async def test_a_customer_with_history_cannot_be_hard_deleted_by_accident(session):
    customer = await create_customer(session, name="博远教育科技有限公司")
    await record_purchase(session, customer_id=customer.id, purchased_on=date(2025, 5, 1), amount_cents=100_00)
    await session.commit()
    with pytest.raises(IntegrityError):
        await session.execute(delete(Customer).where(Customer.id == customer.id))
        await session.commit()


async def test_edits_are_audited_with_old_and_new_values(session):
    region = (await session.execute(select(DictionaryEntry).where(DictionaryEntry.code == "south"))).scalar_one()
    customer = await create_customer(session, name="天成化工有限公司")
    await update_customer(session, customer.id, short_name="天成化工", region_id=region.id, user_id=None)
    await session.commit()
    entry = (await session.execute(select(AuditLog).where(AuditLog.action == "update"))).scalar_one()
    assert entry.changes == {"short_name": [None, "天成化工"], "region_id": [None, region.id]}


@pytest.mark.parametrize("values", [
    {"name": "  "},
    {"name": "x", "credit_rating": 9},
    {"name": "x", "region_id": 999999},
    {"name": "x", "stage": "bored"},
])
async def test_bad_values_are_refused_and_nothing_is_written(session, values):
    with pytest.raises(DomainError):
        await create_customer(session, **values)
    assert (await session.execute(select(Customer))).scalars().all() == []


async def test_a_dictionary_field_must_point_at_the_right_dictionary(session):
    industry = (await session.execute(select(DictionaryEntry).where(DictionaryEntry.kind == "industry"))).scalars().first()
    with pytest.raises(DomainError):
        await create_customer(session, name="x", region_id=industry.id)


async def test_erp_codes_are_unique(session):
    await create_customer(session, name="A", external_id="ERP-1")
    with pytest.raises(DomainError):
        await create_customer(session, name="B", external_id="ERP-1")


async def test_text_fields_are_limited_as_in_an_import_and_nothing_changes(session):
    from services.customers import create_customer, update_customer
    from services.messages import DomainError

    customer = await create_customer(session, name="长度测试有限公司")
    for field, too_long in (("address", "路" * 301), ("notes", "记" * 4001), ("postcode", "1" * 17)):
        with pytest.raises(DomainError, match="too long"):
            await update_customer(session, customer.id, **{field: too_long})
        assert getattr(customer, field) is None
    await update_customer(session, customer.id, address="路" * 300)
    assert len(customer.address) == 300
