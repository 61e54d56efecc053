"""A customer's history (客户交互历史): interactions, orders and feedback in one timeline.

Rules:
- Only a customer the viewer may see has a history for them (services.access), archived ones excepted.
- Newest first, by the day it happened in the viewer's time zone (an order's day is its purchase date),
  then by when it was recorded; voided orders are left out.
- Pages are of a fixed size; a page past the end is the last page.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from models import Feedback, Interaction, Purchase, User, as_utc
from services.access import Viewer
from services.cards import visible_customer

PAGE_SIZE = 8


@dataclass(frozen=True)
class Event:
    source: str  # interaction, purchase, feedback
    kind: str  # the interaction channel, "order", or the feedback kind
    day: date
    recorded_at: datetime
    text: str | None
    by: str | None = None
    amount_cents: int | None = None
    status: str | None = None  # feedback: open / resolved
    rating: int | None = None
    checked_in: bool = False


@dataclass(frozen=True)
class Page:
    events: list[Event]
    number: int  # 0-based
    pages: int
    total: int


async def history(session: AsyncSession, viewer: Viewer, customer_id: int, *, page: int = 0,
                  timezone: str = "Asia/Shanghai", page_size: int = PAGE_SIZE) -> Page:
    customer = await visible_customer(session, viewer, customer_id)
    zone = ZoneInfo(timezone)
    counts = [await session.scalar(select(func.count()).select_from(model).where(*where)) for model, where in (
        (Interaction, [Interaction.customer_id == customer.id]),
        (Purchase, [Purchase.customer_id == customer.id, Purchase.voided_at.is_(None)]),
        (Feedback, [Feedback.customer_id == customer.id]),
    )]
    total = sum(counts)
    pages = max(1, -(-total // page_size))
    page = min(max(page, 0), pages - 1)
    # Each source's newest (page + 1) × page_size rows are enough to fill the page from the merge.
    need = (page + 1) * page_size
    names: dict[int, str] = {}

    async def name(user_id: int | None) -> str | None:
        if user_id is None:
            return None
        if user_id not in names:
            user = await session.get(User, user_id)
            names[user_id] = user.name if user else "?"
        return names[user_id]

    events: list[Event] = []
    for row in (await session.execute(select(Interaction).where(Interaction.customer_id == customer.id)
                                      .order_by(Interaction.occurred_at.desc(), Interaction.id.desc())
                                      .limit(need))).scalars():
        events.append(Event("interaction", row.kind, as_utc(row.occurred_at).astimezone(zone).date(),
                            as_utc(row.occurred_at), row.summary, await name(row.user_id),
                            checked_in=row.latitude is not None))
    for row in (await session.execute(select(Purchase).where(Purchase.customer_id == customer.id,
                                                             Purchase.voided_at.is_(None))
                                      .order_by(Purchase.purchased_on.desc(), Purchase.id.desc())
                                      .limit(need))).scalars():
        events.append(Event("purchase", "order", row.purchased_on, as_utc(row.created_at), row.products,
                            await name(row.recorded_by_id), amount_cents=row.amount_cents))
    for row in (await session.execute(select(Feedback).where(Feedback.customer_id == customer.id)
                                      .order_by(Feedback.created_at.desc(), Feedback.id.desc())
                                      .limit(need))).scalars():
        events.append(Event("feedback", row.kind, as_utc(row.created_at).astimezone(zone).date(),
                            as_utc(row.created_at), row.text, await name(row.user_id), status=row.status,
                            rating=row.rating))
    events.sort(key=lambda e: (e.day, e.recorded_at), reverse=True)
    return Page(events[page * page_size:need], page, pages, total)
