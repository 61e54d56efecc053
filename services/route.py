"""Plan my day (/route): today's must-visit customers as one drive that fits the rep's working hours.

Rules:
- Must-visit today: the rep's open reminders shown today (services.reminders.agenda, so overdue first and
  by value — its `importance`), one stop per customer, archived customers and escalations (those are about
  a rep, not a visit) left out. Customers without coordinates cannot be routed: they are listed apart.
- Start: where the rep stands (a shared location), or else the first must-visit customer, visited first.
- Distance between two points: great-circle (haversine) × ROAD_FACTOR, driven at `speed_kmh`; each visit
  takes `visit_minutes`. The route is open: it ends at the last customer (nobody is sent back to start).
- Time window: every visit starts and ends inside the working day left (from now, or the start of work,
  to the end of work). Visits that do not fit are dropped; dropping one costs its importance, so the
  solver keeps the most important set that fits, and among those drives the shortest way. What is
  dropped is said, never silently lost.
- Order: Google OR-Tools' routing solver (time windows, drop penalties), started from the
  nearest-neighbour route (the baseline: always drive to the nearest stop that still fits), so it is never
  worse than the baseline.
"""

from __future__ import annotations

import io
import math
import time as clock
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from models import ReminderKind, User, utcnow
from services.nearby import distance_km
from services.reminders import agenda, importance, local_today

ROAD_FACTOR = 1.3  # roads are about this much longer than the straight line in a city
SPEED_KMH = 30.0  # average city driving speed, stops and lights included
VISIT_MINUTES = 30
MAX_STOPS = 40  # more than a day can hold; beyond these the least important are left for another day
SOLVE_SECONDS = 1.0
NAVIGATORS = ("amap", "apple", "google")


@dataclass(frozen=True)
class Stop:
    customer_id: int
    name: str
    latitude: float
    longitude: float
    importance: float = 1.0  # services.reminders.importance: how late × what the customer is worth


@dataclass(frozen=True)
class Visit:
    stop: Stop
    arrive: datetime
    leave: datetime
    km: float  # road kilometres from the previous point


@dataclass
class Plan:
    start: tuple[float, float]
    visits: list[Visit] = field(default_factory=list)
    dropped: list[Stop] = field(default_factory=list)  # do not fit in the working hours left
    km: float = 0.0
    seconds: float = 0.0  # time the solver took


@dataclass
class Today:
    stops: list[Stop]  # customers to visit, with coordinates, most important first
    unplaced: list[tuple[int, str]]  # (customer id, name) due today without coordinates


def road_km(a: tuple[float, float], b: tuple[float, float], road_factor: float = ROAD_FACTOR) -> float:
    return distance_km(a[0], a[1], b[0], b[1]) * road_factor


def path_km(start: tuple[float, float], points: list[tuple[float, float]], road_factor: float = ROAD_FACTOR) -> float:
    """Length of the open path start → points[0] → points[1] → …"""
    total, here = 0.0, start
    for point in points:
        total += road_km(here, point, road_factor)
        here = point
    return total


def nearest_neighbour(start: tuple[float, float], points: list[tuple[float, float]], *,
                      fits=None) -> list[int]:
    """The baseline order: from where you are, always the nearest point not visited yet (ties: the earlier
    one). `fits(index, at_index_or_None_for_start, elapsed)` may refuse a point (it would not fit the day);
    it returns the new elapsed value or None. Refused points are left out."""
    left = list(range(len(points)))
    order: list[int] = []
    here, elapsed = start, 0.0
    while left:
        for candidate in sorted(left, key=lambda i: (distance_km(*here, *points[i]), i)):
            after = fits(candidate, order[-1] if order else None, elapsed) if fits else elapsed
            if after is not None:
                order.append(candidate)
                left.remove(candidate)
                here, elapsed = points[candidate], after
                break
        else:
            break
    return order


def plan_day(stops: list[Stop], start: tuple[float, float] | None, begin: datetime, end: datetime, *,
             visit_minutes: int = VISIT_MINUTES, speed_kmh: float = SPEED_KMH, road_factor: float = ROAD_FACTOR,
             solve_seconds: float = SOLVE_SECONDS) -> Plan:
    """Order `stops` (most important first) into visits between `begin` and `end` (local times). With no
    `start`, the first stop is where the day starts and is visited first."""
    from ortools.constraint_solver import pywrapcp, routing_enums_pb2

    began = clock.perf_counter()
    stops = list(stops)
    dropped: list[Stop] = stops[MAX_STOPS:]
    stops = stops[:MAX_STOPS]
    service = visit_minutes * 60
    horizon = max(0, int((end - begin).total_seconds()))
    first: Stop | None = None
    if start is None:
        if not stops:
            return Plan(start=(0.0, 0.0), dropped=dropped)
        first, stops = stops[0], stops[1:]
        start = (first.latitude, first.longitude)
        if service > horizon:  # not even the first visit fits
            return Plan(start=start, dropped=[first, *stops, *dropped])
    points = [start] + [(s.latitude, s.longitude) for s in stops]
    n = len(points)
    metres = [[int(round(road_km(a, b, road_factor) * 1000)) for b in points] for a in points]
    speed = speed_kmh / 3.6  # m/s
    start_service = service if first else 0

    def seconds(i: int, j: int) -> int:
        """Leaving i for j: the visit at i, then the drive."""
        if j == n:  # the end of the day is wherever the last visit is
            return start_service if i == 0 else service
        return (start_service if i == 0 else service) + int(round(metres[i][j] / speed))

    # Baseline: nearest neighbour over the stops that still fit.
    def fits(candidate: int, previous: int | None, elapsed: float) -> float | None:
        at = 0 if previous is None else previous + 1
        arrive = elapsed + seconds(at, candidate + 1)
        return arrive if arrive + service <= horizon else None

    baseline = [i + 1 for i in nearest_neighbour(start, points[1:], fits=fits)]

    manager = pywrapcp.RoutingIndexManager(n + 1, 1, [0], [n])  # node n: the open end
    routing = pywrapcp.RoutingModel(manager)

    def distance_cb(a: int, b: int) -> int:
        i, j = manager.IndexToNode(a), manager.IndexToNode(b)
        return 0 if j == n or i == n else metres[i][j]

    def time_cb(a: int, b: int) -> int:
        i, j = manager.IndexToNode(a), manager.IndexToNode(b)
        return 0 if i == n else seconds(i, j)

    routing.SetArcCostEvaluatorOfAllVehicles(routing.RegisterTransitCallback(distance_cb))
    routing.AddDimension(routing.RegisterTransitCallback(time_cb), 0, max(horizon, 1), True, "time")
    times = routing.GetDimensionOrDie("time")
    # Dropping a stop must cost more than any drive, so the solver visits all it can, most important first.
    longest = max((max(row) for row in metres), default=0) * n + 1
    for node in range(1, n):
        index = manager.NodeToIndex(node)
        times.CumulVar(index).SetRange(0, max(0, horizon - service))
        weight = max(1, int(round(stops[node - 1].importance * 10)))
        routing.AddDisjunction([index], longest * weight)
    params = pywrapcp.DefaultRoutingSearchParameters()
    params.first_solution_strategy = routing_enums_pb2.FirstSolutionStrategy.PATH_CHEAPEST_ARC
    params.local_search_metaheuristic = routing_enums_pb2.LocalSearchMetaheuristic.GUIDED_LOCAL_SEARCH
    # Guided local search runs until the limit; small days need far less than 20-stop ones.
    params.time_limit.FromMilliseconds(max(1, int(solve_seconds * min(1.0, 0.1 + n / 20) * 1000)))
    routing.CloseModelWithParameters(params)
    initial = routing.ReadAssignmentFromRoutes([baseline], True) if baseline else None
    solution = routing.SolveFromAssignmentWithParameters(initial, params) if initial else None
    if solution is None:
        solution = routing.SolveWithParameters(params)
    order: list[int] = []
    if solution is not None:
        index = routing.Start(0)
        while not routing.IsEnd(index):
            node = manager.IndexToNode(index)
            if node:
                order.append(node)
            index = solution.Value(routing.NextVar(index))
    else:  # should not happen (dropping everything is always feasible): keep the baseline
        order = baseline

    visits: list[Visit] = []
    at, elapsed = 0, 0
    if first is not None:
        visits.append(Visit(first, begin, begin + timedelta(seconds=service), 0.0))
    for node in order:
        elapsed += seconds(at, node)
        arrive = begin + timedelta(seconds=elapsed)
        visits.append(Visit(stops[node - 1], arrive, arrive + timedelta(seconds=service), metres[at][node] / 1000))
        at = node
    kept = {node for node in order}
    dropped = [s for i, s in enumerate(stops, start=1) if i not in kept] + dropped
    return Plan(start=start, visits=visits, dropped=dropped, km=round(sum(v.km for v in visits), 2),
                seconds=clock.perf_counter() - began)


async def plan_work(stops: list[Stop], start: tuple[float, float] | None, begin: datetime, end: datetime,
                    visit_minutes: int, speed_kmh: float, sessions=None) -> Plan:
    """`plan_day` as work for a worker process (bot.background, the "route" lane): the solver's second of
    Python callbacks runs beside the bot, not in a thread sharing its interpreter lock."""
    return plan_day(stops, start, begin, end, visit_minutes=visit_minutes, speed_kmh=speed_kmh)


async def todays_stops(session: AsyncSession, user: User, now: datetime | None = None) -> Today:
    """Who the rep must visit today: customers of their open reminders, most important first."""
    now = now or utcnow()
    items = await agenda(session, user, now)
    today = local_today(user, now)
    seen: set[int] = set()
    stops: list[Stop] = []
    unplaced: list[tuple[int, str]] = []
    for item in items:
        customer = item.customer
        if (customer is None or customer.id in seen or customer.archived_at is not None
                or item.reminder.kind == ReminderKind.escalation):
            continue
        seen.add(customer.id)
        if customer.latitude is None or customer.longitude is None:
            unplaced.append((customer.id, customer.name))
        else:
            stops.append(Stop(customer.id, customer.name, customer.latitude, customer.longitude,
                              importance(item, today)))
    return Today(stops, unplaced)


def working_window(user: User, now: datetime | None = None) -> tuple[datetime, datetime]:
    """The rest of the rep's working day in their time zone: from now (or the start of work, if earlier) to
    the end of work. After the end of work the window is empty (begin == end)."""
    tz = ZoneInfo(user.timezone)
    local = (now or utcnow()).astimezone(tz)
    start = datetime.combine(local.date(), user.work_start, tzinfo=tz)
    end = datetime.combine(local.date(), user.work_end, tzinfo=tz)
    begin = min(max(local.replace(second=0, microsecond=0), start), end)
    return begin, end


def navigator_for(language: str) -> str:
    """The map app a user who chose none gets: Amap (高德) for Chinese, Google Maps otherwise."""
    return "amap" if language.lower().startswith("zh") else "google"


def users_navigator(user: User) -> str:
    """Map-app rule: the app the user chose in /settings, else the one for their language."""
    return user.navigator if user.navigator in NAVIGATORS else navigator_for(user.language)


def visit_minutes_for(user: User, default: int) -> int:
    """Visit-length rule: the minutes the user set in /settings (services.users.set_visit_minutes), else the
    server's ROUTE_VISIT_MINUTES (`default`)."""
    return user.visit_minutes or default


def navigation_url(stop: Stop, navigator: str) -> str:
    """A link that opens the map app at the customer, ready to navigate. Coordinates are WGS-84 (GPS and
    Telegram locations); Amap is told so."""
    lat, lon = f"{stop.latitude:.6f}", f"{stop.longitude:.6f}"
    if navigator == "amap":
        return "https://uri.amap.com/marker?" + urlencode(
            {"position": f"{lon},{lat}", "name": stop.name, "coordinate": "wgs84", "callnative": "1"},
            quote_via=quote, safe=",")
    if navigator == "apple":
        return "https://maps.apple.com/?" + urlencode({"daddr": f"{lat},{lon}", "q": stop.name}, quote_via=quote,
                                                      safe=",")
    if navigator == "google":
        return "https://www.google.com/maps/dir/?" + urlencode(
            {"api": "1", "destination": f"{lat},{lon}"}, safe=",")
    raise ValueError(f"unknown navigator {navigator!r}")


def route_map(plan: Plan, title: str, *, start_label: str = "", dropped_label: str = "") -> bytes:
    """The route drawn on plain axes (no map tiles): the start, then each visit as a numbered point with the
    customer's name beside it, joined in order; visits left out as crosses. The legend sits under the axes,
    where it hides no stop. Longitude and latitude are drawn at equal ground scale (1° of longitude shrinks
    by cos(lat))."""
    from services.charts import DPI, PALETTE, _figure, _lock, _png, cjk_font

    with _lock:
        figure, axes = _figure(title)
        lats = [plan.start[0]] + [v.stop.latitude for v in plan.visits]
        lons = [plan.start[1]] + [v.stop.longitude for v in plan.visits]
        axes.plot(lons, lats, color=PALETTE[0], linewidth=2, zorder=1)
        axes.scatter(lons[:1], lats[:1], marker="s", s=120, color=PALETTE[2], zorder=2, label=start_label or None)
        for number, visit in enumerate(plan.visits, start=1):
            point = (visit.stop.longitude, visit.stop.latitude)
            axes.scatter([point[0]], [point[1]], s=320, color=PALETTE[1], zorder=3, edgecolors="white")
            axes.annotate(str(number), point, ha="center", va="center", fontproperties=cjk_font(11), color="white",
                          zorder=4)
            name = visit.stop.name if len(visit.stop.name) <= 14 else visit.stop.name[:13] + "…"
            axes.annotate(name, point, xytext=(11, 6), textcoords="offset points", fontproperties=cjk_font(8),
                          color="#333333", zorder=4)
        for i, stop in enumerate(plan.dropped):
            axes.scatter([stop.longitude], [stop.latitude], marker="x", s=80, color=PALETTE[7], zorder=2,
                         label=(dropped_label or None) if i == 0 else None)
        middle = sum(lats) / len(lats)
        axes.set_aspect(1 / max(0.05, math.cos(math.radians(middle))), adjustable="datalim")
        axes.margins(0.12)
        axes.set_xticks([])
        axes.set_yticks([])
        if start_label or (dropped_label and plan.dropped):
            axes.legend(prop=cjk_font(9), loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=2, frameon=False)
        figure.set_dpi(DPI)
        buffer = io.BytesIO(_png(figure))
        return buffer.getvalue()
