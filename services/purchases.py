"""Purchases (交易记录): recorded by reps or imported from the ERP.

Rules:
- An amount is never negative; the date is not in the future.
- Users never delete a purchase: a wrong one is corrected (an audited edit, old and new values kept
  in the audit log) or voided (kept, but no longer counted).
- Every add, correction or void refreshes the customer's roll-ups in the same transaction.
- A purchase moves a prospect to the `customer` stage.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from models import Customer, Purchase, Stage, utcnow
from models.activity import PRODUCTS_LIMIT
from services import audit, reminders, rollups
from services.customers import get_customer
from services.messages import N_, DomainError
from services.sql import replayed

CORRECTABLE = {"purchased_on", "products", "quantity", "amount_cents", "payment_method", "payment_status", "order_no"}


def check_order_amount(amount_cents: int) -> int:
    """Rule: an order (recorded in the bot or the API) has an amount above zero."""
    if amount_cents <= 0:
        raise DomainError(N_("An order needs an amount above zero."))
    return amount_cents


def check_products(products: str | None) -> str | None:
    """Rule: what was ordered is at most PRODUCTS_LIMIT characters."""
    products = (products or "").strip() or None
    if products and len(products) > PRODUCTS_LIMIT:
        raise DomainError(N_("That is too long: at most {limit} characters."), limit=PRODUCTS_LIMIT)
    return products


def _check(values: dict[str, Any], *, today: date) -> None:
    if values.get("amount_cents") is not None and values["amount_cents"] < 0:
        raise DomainError(N_("an amount cannot be negative"))
    if values.get("purchased_on") is not None and values["purchased_on"] > today:
        raise DomainError(N_("a purchase cannot be in the future"))


async def record_purchase(session: AsyncSession, *, customer_id: int, purchased_on: date, amount_cents: int,
                          products: str | None = None, quantity: float | None = None,
                          order_no: str | None = None, payment_method: str | None = None,
                          payment_status: str = "paid", source: str = "chat",
                          user_id: int | None = None, today: date | None = None,
                          origin_key: str | None = None) -> Purchase:
    """Record an order; the same input (`origin_key`) recorded again returns the first row (one input, one
    record: a double tap never counts an order twice in the customer's roll-ups)."""
    if (earlier := await replayed(session, Purchase, origin_key)) is not None:
        return earlier
    values = {"purchased_on": purchased_on, "amount_cents": amount_cents}
    _check(values, today=today or utcnow().date())
    if source == "chat":  # imports may carry zero-amount lines (samples, credit notes): they keep today's rule
        check_order_amount(amount_cents)
    products = check_products(products)
    customer = await get_customer(session, customer_id)
    purchase = Purchase(customer_id=customer.id, purchased_on=purchased_on, amount_cents=amount_cents,
                        products=products, quantity=quantity, order_no=order_no, payment_method=payment_method,
                        payment_status=payment_status, source=source, recorded_by_id=user_id,
                        origin_key=origin_key)
    session.add(purchase)
    await session.flush()
    if customer.stage != Stage.customer:
        await session.execute(update(Customer).where(Customer.id == customer.id).values(stage=Stage.customer))
        await session.refresh(customer, ["stage"])
    audit.record(session, action="create", entity="purchase", entity_id=purchase.id, user_id=user_id,
                 changes={"customer_id": customer.id, "amount_cents": amount_cents, "purchased_on": purchased_on})
    await rollups.refresh(session, [customer.id])
    await reminders.close_answered(session, customer_ids=[customer.id])
    return purchase


async def correct_purchase(session: AsyncSession, purchase_id: int, *, user_id: int | None = None,
                           today: date | None = None, **values: Any) -> Purchase:
    """An audited edit: the audit log keeps what the purchase said before."""
    unknown = set(values) - CORRECTABLE
    if unknown:
        raise ValueError(f"not correctable: {sorted(unknown)}")
    purchase = await session.get(Purchase, purchase_id)
    if purchase is None or purchase.voided_at is not None:
        raise DomainError(N_("purchase not found"))
    _check(values, today=today or utcnow().date())
    changes = {}
    for field, new in values.items():
        if getattr(purchase, field) != new:
            changes[field] = [getattr(purchase, field), new]
            setattr(purchase, field, new)
    if changes:
        audit.record(session, action="update", entity="purchase", entity_id=purchase.id, changes=changes,
                     user_id=user_id)
        await rollups.refresh(session, [purchase.customer_id])
    return purchase


async def void_purchase(session: AsyncSession, purchase_id: int, *, user_id: int | None = None,
                        reason: str | None = None) -> Purchase:
    purchase = await session.get(Purchase, purchase_id)
    if purchase is None or purchase.voided_at is not None:
        raise DomainError(N_("purchase not found"))
    purchase.voided_at = utcnow()
    audit.record(session, action="void", entity="purchase", entity_id=purchase.id,
                 changes={"reason": reason} if reason else {}, user_id=user_id)
    await rollups.refresh(session, [purchase.customer_id])
    return purchase
