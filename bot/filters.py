"""Filters shared by routers."""

from aiogram.filters import Filter
from aiogram.filters.callback_data import CallbackData
from aiogram.types import TelegramObject
from sqlalchemy.ext.asyncio import AsyncSession

from models import User
from services.access import Viewer
from services.cards import visible_customer


class Registered(Filter):
    """The sender has an active account (strangers are answered by handlers.start only)."""

    async def __call__(self, event: TelegramObject, user: User | None = None) -> bool:
        return user is not None


class ButtonCustomer(Filter):
    """The customer a button names (its callback data's `field`), loaded once and handed to the handler as
    `customer`. One the person may not see — gone, archived, another team's — is refused by
    services.cards.visible_customer, and bot.errors answers that refusal as an alert; the handler never
    runs. Put it after the CallbackData filter."""

    def __init__(self, field: str = "id") -> None:
        self.field = field

    async def __call__(self, event: TelegramObject, callback_data: CallbackData, session: AsyncSession,
                       viewer: Viewer) -> dict:
        return {"customer": await visible_customer(session, viewer, getattr(callback_data, self.field))}
