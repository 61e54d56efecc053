"""Plan my day: the solver's route against the nearest-neighbour order on the same stops.

    .venv/bin/python bench/route_bench.py [--days 100] [--stops 20] [--seconds 1.0] [--seed 17]

Each day (seeded): a start and `stops` customers placed at random in a 30 × 30 km city around Guangzhou:
"uniform" (the textbook random instance) and "clustered" (half uniform, half in three business districts,
as a rep's customers often are). The
distance is the straight line × 1.3 (services.route). Both orders must visit every stop, so the day is
made long enough for all (00:00 to the next noon) and the comparison is distance only:
- nearest neighbour: always drive to the nearest stop not visited yet (services.route.nearest_neighbour);
- the product: services.route.plan_day (OR-Tools routing, guided local search for `--seconds`).
Then (clustered only) the same days inside 09:00–18:00 with 30-minute visits: how many visits each keeps (the baseline
takes the nearest stop that still fits; the solver keeps the most it can, most important first).
Printed: the mean, median and worst ratio solver / nearest-neighbour distance, how many days the solver
is ≥ 10 % shorter, the solve time per day, and the visits kept in working hours with the share of the
day's importance they carry (the solver trades a visit for a more important one; the baseline does not).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from services.route import ROAD_FACTOR, Stop, nearest_neighbour, path_km, plan_day

CENTRE = (23.13, 113.30)
HALF_KM = 15.0


def _day(rng: random.Random, count: int, layout: str) -> tuple[tuple[float, float], list[Stop]]:
    lat_km, lon_km = 111.2, 111.2 * 0.92  # cos(23.13°)

    def point(x_km: float, y_km: float) -> tuple[float, float]:
        return CENTRE[0] + y_km / lat_km, CENTRE[1] + x_km / lon_km

    clusters = [(rng.uniform(-HALF_KM, HALF_KM), rng.uniform(-HALF_KM, HALF_KM)) for _ in range(3)]
    stops = []
    for n in range(count):
        if layout == "clustered" and n % 2:
            cx, cy = rng.choice(clusters)
            x, y = cx + rng.gauss(0, 2.0), cy + rng.gauss(0, 2.0)
        else:
            x, y = rng.uniform(-HALF_KM, HALF_KM), rng.uniform(-HALF_KM, HALF_KM)
        lat, lon = point(x, y)
        stops.append(Stop(n, f"c{n}", lat, lon, importance=rng.choice([1, 2, 3, 5, 8, 13])))
    start = point(rng.uniform(-HALF_KM, HALF_KM), rng.uniform(-HALF_KM, HALF_KM))
    return start, stops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=100)
    parser.add_argument("--stops", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=1.0, help="solver time limit per day")
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--layouts", default="uniform,clustered")
    args = parser.parse_args()
    print(f"{args.days} days × {args.stops} stops (seed {args.seed}, solver limit {args.seconds:.1f} s/day, "
          f"road factor {ROAD_FACTOR})")
    for layout in args.layouts.split(","):
        _run(layout, args)


def _run(layout: str, args: argparse.Namespace) -> None:
    rng = random.Random(args.seed)
    day = datetime(2026, 12, 7, tzinfo=UTC)
    ratios, times, ours_km, greedy_km = [], [], [], []
    kept_ours, kept_greedy, worth_ours, worth_greedy = [], [], [], []
    for _ in range(args.days):
        start, stops = _day(rng, args.stops, layout)
        points = [(s.latitude, s.longitude) for s in stops]
        greedy = path_km(start, [points[i] for i in nearest_neighbour(start, points)], ROAD_FACTOR)
        began = time.perf_counter()
        plan = plan_day(stops, start, day, day + timedelta(hours=36), solve_seconds=args.seconds)
        times.append(time.perf_counter() - began)
        assert not plan.dropped, "a day long enough for every stop dropped one"
        ours_km.append(plan.km)
        greedy_km.append(greedy)
        ratios.append(plan.km / greedy)
        if layout == "clustered":  # the working day: 09:00-18:00, 30-minute visits, 30 km/h
            hours = plan_day(stops, start, day + timedelta(hours=9), day + timedelta(hours=18),
                             solve_seconds=args.seconds)
            kept_ours.append(len(hours.visits))
            worth_ours.append(sum(v.stop.importance for v in hours.visits) / sum(s.importance for s in stops))
            greedy_order = _greedy_kept(start, stops)
            kept_greedy.append(len(greedy_order))
            worth_greedy.append(sum(stops[i].importance for i in greedy_order) / sum(s.importance for s in stops))
    better = sum(r <= 0.9 for r in ratios)
    mean = statistics.mean(ratios)
    print(f"[{layout}] distance, all stops visited: solver mean {statistics.mean(ours_km):.1f} km, "
          f"nearest-neighbour mean {statistics.mean(greedy_km):.1f} km")
    print(f"[{layout}] ratio solver / nearest-neighbour: mean {mean:.3f} (solver {(1 - mean) * 100:.1f} % shorter), "
          f"median {statistics.median(ratios):.3f}, worst {max(ratios):.3f}, best {min(ratios):.3f}; "
          f"≥ 10 % shorter on {better}/{args.days} days — target (mean ≥ 10 % shorter) "
          + ("met" if mean <= 0.9 else "NOT met"))
    print(f"[{layout}] solve time per day (model build included): mean {statistics.mean(times):.2f} s, "
          f"max {max(times):.2f} s")
    if kept_ours:
        print(f"[{layout}] 09:00-18:00, 30-min visits at 30 km/h: visits kept per day — solver mean "
              f"{statistics.mean(kept_ours):.2f}, nearest-neighbour-that-fits mean {statistics.mean(kept_greedy):.2f}; "
              f"importance kept (share of the day's total): solver {statistics.mean(worth_ours) * 100:.1f} %, "
              f"nearest-neighbour {statistics.mean(worth_greedy) * 100:.1f} %")


def _greedy_kept(start: tuple[float, float], stops: list[Stop], visit_s: int = 1800, speed: float = 30 / 3.6,
                 horizon: int = 9 * 3600) -> list[int]:
    from services.route import road_km

    points = [(s.latitude, s.longitude) for s in stops]

    def fits(candidate: int, previous: int | None, elapsed: float) -> float | None:
        here = start if previous is None else points[previous]
        arrive = elapsed + (0 if previous is None else visit_s) + road_km(here, points[candidate]) * 1000 / speed
        return arrive if arrive + visit_s <= horizon else None

    return nearest_neighbour(start, points, fits=fits)


if __name__ == "__main__":
    main()
