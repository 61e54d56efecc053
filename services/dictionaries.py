"""System dictionaries (系统字典) are data: admins add, rename and retire entries, each with a label per
locale. Matching rule: a value typed by a person or found in a file matches an entry of the right kind
by its code or by any locale's label, ignoring case, width and surrounding spaces; retired entries
still match (old files keep importing) but are not offered for new choices."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from models import ContactStrategy, DictionaryEntry, DictionaryKind, PurchaseStrategy
from services.messages import N_, DomainError
from services.parsing import fold_width


def _key(text: str) -> str:
    return fold_width(text).strip().casefold()


@dataclass
class Vocabulary:
    """Every dictionary and strategy, indexed for matching by code or label in any locale."""

    by_kind: dict[str, dict[str, int]]
    kinds_of: dict[int, str]

    def match(self, kind: str, value: str) -> int | None:
        return self.by_kind.get(kind, {}).get(_key(value))


STRATEGY_KINDS = ("contact_strategy", "purchase_strategy")


async def load_vocabulary(session: AsyncSession) -> Vocabulary:
    by_kind: dict[str, dict[str, int]] = {}
    kinds_of: dict[int, str] = {}
    for entry in (await session.execute(select(DictionaryEntry).order_by(DictionaryEntry.id))).scalars():
        names = by_kind.setdefault(entry.kind, {})
        for text in (entry.code, *entry.labels()):
            names.setdefault(_key(text), entry.id)
        kinds_of[entry.id] = entry.kind
    for kind, model in (("contact_strategy", ContactStrategy), ("purchase_strategy", PurchaseStrategy)):
        names = by_kind.setdefault(kind, {})
        for strategy in (await session.execute(select(model).order_by(model.id))).scalars():
            for text in (strategy.code, *strategy.labels()):
                names.setdefault(_key(text), strategy.id)
    return Vocabulary(by_kind, kinds_of)


async def entries(session: AsyncSession, kind: DictionaryKind | str, *, active_only: bool = True) -> list[DictionaryEntry]:
    """The entries of one dictionary in display order (what a picker offers)."""
    query = select(DictionaryEntry).where(DictionaryEntry.kind == str(kind))
    if active_only:
        query = query.where(DictionaryEntry.active.is_(True))
    return list((await session.execute(query.order_by(DictionaryEntry.sort_order, DictionaryEntry.id))).scalars())


async def strategies(session: AsyncSession, model: type[ContactStrategy] | type[PurchaseStrategy]) -> list:
    """The active contact or purchase strategies, shortest cycle first (what a picker offers)."""
    return list((await session.execute(select(model).where(model.active.is_(True))
                                       .order_by(model.cycle_days, model.id))).scalars())


async def add_entry(session: AsyncSession, kind: DictionaryKind | str, code: str, labels: tuple[str, str, str]) -> DictionaryEntry:
    """Add a dictionary entry; the code must be new within its dictionary and every label non-empty."""
    kind = str(kind)
    if kind not in {k.value for k in DictionaryKind}:
        raise DomainError(N_("there is no dictionary called “{kind}”"), kind=kind)
    if not code.strip() or not all(label.strip() for label in labels):
        raise DomainError(N_("a dictionary entry needs a code and a label in every language"))
    exists = await session.scalar(select(DictionaryEntry.id).where(DictionaryEntry.kind == kind, DictionaryEntry.code == code))
    if exists:
        raise DomainError(N_("“{code}” is already in this dictionary"), code=code)
    last = await session.scalar(select(DictionaryEntry.sort_order).where(DictionaryEntry.kind == kind)
                                .order_by(DictionaryEntry.sort_order.desc()).limit(1))
    entry = DictionaryEntry(kind=kind, code=code.strip(), sort_order=(last or 0) + 1,
                            label_zh_hans=labels[0].strip(), label_zh_hant=labels[1].strip(), label_en=labels[2].strip())
    session.add(entry)
    await session.flush()
    return entry


async def retire_entry(session: AsyncSession, entry_id: int) -> None:
    """Retire an entry: customers keep it, pickers stop offering it."""
    entry = await session.get(DictionaryEntry, entry_id)
    if entry is None:
        raise DomainError(N_("no such dictionary entry"))
    entry.active = False


async def rename_entry(session: AsyncSession, entry_id: int, labels: tuple[str, str, str]) -> DictionaryEntry:
    """Rename an entry in every language; customers pointing at it show the new name at once."""
    entry = await session.get(DictionaryEntry, entry_id)
    if entry is None:
        raise DomainError(N_("no such dictionary entry"))
    if not all(label.strip() for label in labels):
        raise DomainError(N_("a dictionary entry needs a code and a label in every language"))
    entry.label_zh_hans, entry.label_zh_hant, entry.label_en = (label.strip() for label in labels)
    return entry
