"""Customer feedback (客户反馈): complaints, suggestions, inquiries, praise, with a 1–5 rating.

Rules:
- A complaint stays open until someone who may see the customer resolves it with a note of what was
  done; the time from raised to resolved is kept (complaint analysis).
- Suggestions, inquiries and praise are recorded as handled at once (nothing to follow up in the CRM).
- A complaint needs a text saying what is wrong; a rating goes from 1 to 5; the product is optional.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from models import Feedback, FeedbackKind, FeedbackStatus, utcnow
from models.activity import FEEDBACK_PRODUCT_LIMIT, FEEDBACK_TEXT_LIMIT
from services import audit
from services.customers import get_customer
from services.messages import N_, DomainError
from services.sql import replayed

MAX_TEXT = FEEDBACK_TEXT_LIMIT


def check_product(product: str | None) -> str | None:
    """Rule: the product feedback is about is at most FEEDBACK_PRODUCT_LIMIT characters (the column's size)."""
    product = (product or "").strip() or None
    if product and len(product) > FEEDBACK_PRODUCT_LIMIT:
        raise DomainError(N_("That is too long: at most {limit} characters."), limit=FEEDBACK_PRODUCT_LIMIT)
    return product


async def record_feedback(session: AsyncSession, *, customer_id: int, kind: str, text: str | None,
                          product: str | None = None, rating: int | None = None,
                          user_id: int | None = None, origin_key: str | None = None) -> Feedback:
    """Record feedback; the same input (`origin_key`) recorded again returns the first row."""
    if (earlier := await replayed(session, Feedback, origin_key)) is not None:
        return earlier
    if kind not in {k.value for k in FeedbackKind}:
        raise DomainError(N_("no such kind of feedback"))
    text = (text or "").strip() or None
    if kind == FeedbackKind.complaint and not text:
        raise DomainError(N_("a complaint needs a few words about what is wrong"))
    if text and len(text) > MAX_TEXT:
        raise DomainError(N_("too long: at most {limit} characters"), limit=MAX_TEXT)
    if rating is not None and not 1 <= rating <= 5:
        raise DomainError(N_("a rating goes from 1 to 5"))
    product = check_product(product)
    customer = await get_customer(session, customer_id)
    now = utcnow()
    complaint = kind == FeedbackKind.complaint
    feedback = Feedback(customer_id=customer.id, user_id=user_id, kind=kind, product=(product or "").strip() or None,
                        rating=rating, text=text, created_at=now,
                        status=FeedbackStatus.open if complaint else FeedbackStatus.resolved,
                        resolved_at=None if complaint else now, origin_key=origin_key)
    session.add(feedback)
    await session.flush()
    audit.record(session, action="create", entity="feedback", entity_id=feedback.id, user_id=user_id,
                 changes={"customer_id": customer.id, "kind": kind, "rating": rating})
    return feedback


async def complaint_recipients(session: AsyncSession, feedback: Feedback) -> list[Any]:
    """Complaint routing rule: the direct manager of the customer's owner (else of the rep who recorded it)
    hears of a new complaint; with no active manager above, the admins do. The person who recorded it is
    never told of their own complaint."""
    from sqlalchemy import select

    from models import Customer, User

    customer = await session.get(Customer, feedback.customer_id)
    author = await session.get(User, feedback.user_id) if feedback.user_id else None
    start = customer.owner_id or (author.id if author else None)
    managers: list[User] = []
    seen: set[int] = set()
    person = await session.get(User, start) if start else None
    while person is not None and person.manager_id and person.manager_id not in seen:
        seen.add(person.manager_id)
        person = await session.get(User, person.manager_id)
        if person is not None and person.active:
            managers.append(person)
            break  # the direct manager; escalation further up is the manager's call
    if not managers:  # nobody above: the admins hear of it
        managers = list((await session.execute(select(User).where(
            User.role == "admin", User.active.is_(True)))).scalars())
    return [m for m in managers if not (author and m.id == author.id)]


async def resolve_complaint(session: AsyncSession, feedback_id: int, *, resolution: str,
                            user_id: int | None = None) -> Feedback:
    feedback = await session.get(Feedback, feedback_id)
    if feedback is None or feedback.kind != FeedbackKind.complaint:
        raise DomainError(N_("no such complaint"))
    if feedback.status == FeedbackStatus.resolved:
        raise DomainError(N_("this complaint was already resolved"))
    resolution = (resolution or "").strip()
    if not resolution:
        raise DomainError(N_("say what was done to resolve it"))
    if len(resolution) > MAX_TEXT:
        raise DomainError(N_("too long: at most {limit} characters"), limit=MAX_TEXT)
    feedback.status = FeedbackStatus.resolved
    feedback.resolved_at = utcnow()
    feedback.resolved_by_id = user_id
    feedback.resolution = resolution
    audit.record(session, action="resolve", entity="feedback", entity_id=feedback.id, user_id=user_id,
                 changes={"resolution": resolution})
    return feedback
