"""Filters shared by routers."""

from aiogram.filters import Filter
from aiogram.types import TelegramObject

from models import User


class Registered(Filter):
    """The sender has an active account (strangers are answered by handlers.start only)."""

    async def __call__(self, event: TelegramObject, user: User | None = None) -> bool:
        return user is not None
