"""Customers near where the rep stands (/nearby).

Rules:
- Only customers the viewer may see, not archived, with known coordinates (from an import, or from the
  first check-in at the customer — services.interactions).
- Within the radius by great-circle distance; customers overdue for contact (days since the last contact
  beyond their contact strategy's cycle) come first, most overdue first, then the nearest.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from models import ContactStrategy, Customer, as_utc, utcnow
from services.access import Viewer
from services.interactions import check_location

EARTH_KM = 6371.0088
RADII_KM = (5, 20, 50)


@dataclass(frozen=True)
class Nearby:
    customer_id: int
    name: str
    distance_km: float
    overdue_days: int
    days_since_contact: int | None


def distance_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Haversine great-circle distance."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_KM * math.asin(min(1.0, math.sqrt(a)))


async def customers_near(session: AsyncSession, viewer: Viewer, latitude: float, longitude: float, *,
                         radius_km: float = RADII_KM[0], limit: int = 10, now: datetime | None = None) -> list[Nearby]:
    check_location(latitude, longitude)
    now = now or utcnow()
    dlat = radius_km / 111.0
    dlon = radius_km / max(1e-6, 111.0 * math.cos(math.radians(min(89.0, abs(latitude)))))
    query = select(Customer.id, Customer.name, Customer.latitude, Customer.longitude, Customer.last_contact_at,
                   Customer.created_at, Customer.contact_strategy_id).where(
        Customer.archived_at.is_(None), Customer.latitude.is_not(None),
        Customer.latitude.between(latitude - dlat, latitude + dlat))
    if dlon < 180:
        low, high = longitude - dlon, longitude + dlon
        query = query.where(or_(Customer.longitude.between(low, high), Customer.longitude.between(low + 360, high + 360),
                                Customer.longitude.between(low - 360, high - 360)))
    if viewer.owners is not None:
        owned = Customer.owner_id.in_(viewer.owners)
        query = query.where(or_(owned, Customer.owner_id.is_(None)) if viewer.unassigned else owned)
    elif not viewer.unassigned:
        query = query.where(Customer.owner_id.is_not(None))
    cycles = dict((await session.execute(select(ContactStrategy.id, ContactStrategy.cycle_days))).all())
    found = []
    for cid, name, lat, lon, last_contact, created, strategy in (await session.execute(query)).all():
        km = distance_km(latitude, longitude, lat, lon)
        if km > radius_km:
            continue
        since = last_contact or created
        days = (now - as_utc(since)).days if since else None
        overdue = max(0, days - cycles[strategy]) if days is not None and strategy in cycles else 0
        found.append(Nearby(cid, name, round(km, 2), overdue, days if last_contact else None))
    found.sort(key=lambda n: (-n.overdue_days, n.distance_km, n.customer_id))
    return found[:limit]
