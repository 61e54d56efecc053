"""Callback data of inline buttons (aiogram CallbackData factories: typed, validated, ≤ 64 bytes)."""

from aiogram.filters.callback_data import CallbackData


class CustomerCallback(CallbackData, prefix="cust"):
    action: str  # card
    id: int
