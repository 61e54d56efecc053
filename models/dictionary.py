"""System dictionaries and the contact / purchase strategy definitions (客户联系策略定义, 客户购买策略定义)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import UniqueConstraint
from sqlmodel import Field, SQLModel

from models.common import utcnow


class Labelled(SQLModel):
    """A row a user sees by name: one label per supported locale."""

    label_zh_hans: str = Field(max_length=120)
    label_zh_hant: str = Field(max_length=120)
    label_en: str = Field(max_length=120)

    def label(self, language: str) -> str:
        return {
            "zh_Hans": self.label_zh_hans,
            "zh_Hant": self.label_zh_hant,
        }.get(language, self.label_en) or self.label_en

    def labels(self) -> tuple[str, str, str]:
        return self.label_zh_hans, self.label_zh_hant, self.label_en


class DictionaryEntry(Labelled, table=True):
    """An entry of a system dictionary; admins add, rename and retire (active=False) entries."""

    __tablename__ = "dictionary_entry"
    __table_args__ = (UniqueConstraint("kind", "code"),)

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=32, index=True)
    code: str = Field(max_length=64)
    sort_order: int = Field(default=0)
    active: bool = Field(default=True)
    created_at: datetime = Field(default_factory=utcnow)


class ContactStrategy(Labelled, table=True):
    """Contact cycle: the owner is reminded when nobody contacted the customer within `cycle_days`;
    past `cycle_days * overdue_factor` the customer is overdue and the manager is told too."""

    __tablename__ = "contact_strategy"

    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(max_length=64, unique=True)
    cycle_days: int = Field(gt=0)
    overdue_factor: float = Field(default=1.5, gt=1)
    active: bool = Field(default=True)


class PurchaseStrategy(Labelled, table=True):
    """Purchase cycle: a business-decline alert is raised when the customer has not bought within it."""

    __tablename__ = "purchase_strategy"

    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(max_length=64, unique=True)
    cycle_days: int = Field(gt=0)
    active: bool = Field(default=True)
