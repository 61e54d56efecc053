"""The labelled lookup set (tests/data, made by make_lookup_set.py) and how to score a search against it.
Used by the accuracy test and by bench/lookup_bench.py."""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

DATA = Path(__file__).resolve().parent / "data"


def load_queries() -> list[tuple[str, str, str]]:
    with (DATA / "lookup_queries.tsv").open(encoding="utf-8") as fh:
        return [(row["kind"], row["query"], row["expected"]) for row in csv.DictReader(fh, delimiter="\t")]


async def load_customers(session: AsyncSession) -> dict[str, int]:
    """Import the set's customers and contacts; returns {ERP code or name: customer id}."""
    from models import Customer
    from services.importer import import_file

    for kind, name in (("customers", "lookup_customers.csv"), ("contacts", "lookup_contacts.csv")):
        report = await import_file(session, kind, DATA / name)
        assert report.ok, [(e.row, e.column, e.value, e.problem) for e in report.errors[:5]]
    await session.commit()
    ids = {}
    for cid, code, name in (await session.execute(select(Customer.id, Customer.external_id, Customer.name))).all():
        ids[name] = cid
        if code:
            ids[code] = cid
    return ids


@dataclass
class Accuracy:
    """Top-1 / top-3 over the unambiguous queries; ambiguous ones ("~" kinds) counted on their own."""

    total: int = 0
    top1: int = 0
    top3: int = 0
    by_kind: dict[str, list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0, 0]))
    misses: list[tuple[str, str, str, list[str]]] = field(default_factory=list)
    ambiguous_total: int = 0
    ambiguous_top3: int = 0

    @property
    def top1_rate(self) -> float:
        return self.top1 / max(self.total, 1)

    @property
    def top3_rate(self) -> float:
        return self.top3 / max(self.total, 1)

    @property
    def ambiguous_top3_rate(self) -> float:
        return self.ambiguous_top3 / max(self.ambiguous_total, 1)


def evaluate(search: Callable[[str], list[int]], queries: list[tuple[str, str, str]], ids: dict[str, int],
             names: dict[int, str] | None = None) -> Accuracy:
    """`search(query)` returns customer ids, best first."""
    result = Accuracy()
    for kind, query, expected in queries:
        found = search(query)[:3]
        want = ids[expected]
        counts = result.by_kind[kind]
        counts[0] += 1
        if kind.endswith("~"):
            result.ambiguous_total += 1
            result.ambiguous_top3 += want in found
            counts[1] += found[:1] == [want]
            counts[2] += want in found
            continue
        result.total += 1
        if found[:1] == [want]:
            result.top1 += 1
            counts[1] += 1
        if want in found:
            result.top3 += 1
            counts[2] += 1
        else:
            result.misses.append((kind, query, expected, [names.get(i, str(i)) if names else str(i) for i in found]))
    return result


@dataclass
class DirectOpens:
    """How often a rule opens a card straight away, and how often that card is the wrong customer."""

    total: int = 0
    opened: int = 0
    wrong: list[tuple[str, str]] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.opened / max(self.total, 1)


def direct_opens(rule: Callable[[list], Any], search: Callable[[str], list], queries: list[tuple[str, str, str]],
                 ids: dict[str, int]) -> DirectOpens:
    """`rule(matches)` → the match to open or None, over the unambiguous queries."""
    result = DirectOpens()
    for kind, query, expected in queries:
        if kind.endswith("~"):
            continue
        result.total += 1
        winner = rule(search(query))
        if winner is not None:
            result.opened += 1
            if winner.customer_id != ids[expected]:
                result.wrong.append((kind, query))
    return result
