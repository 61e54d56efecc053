"""Driving the real Dispatcher in tests: a bot session that records every API call and answers like
Telegram, and helpers that build updates as Telegram sends them."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any

from aiogram import Bot
from aiogram.client.session.base import BaseSession
from aiogram.methods import AnswerCallbackQuery, GetMe, SendMessage, TelegramMethod
from aiogram.types import CallbackQuery, Chat, Message, Update, User

BOT_USER = User(id=4242, is_bot=True, first_name="FieldCRM", username="fieldcrm_test_bot")
_ids = itertools.count(1)


class RecordingSession(BaseSession):
    def __init__(self) -> None:
        super().__init__()
        self.requests: list[TelegramMethod[Any]] = []

    async def close(self) -> None:
        pass

    async def stream_content(self, *args: Any, **kwargs: Any):  # noqa: ANN201
        yield b""

    async def make_request(self, bot: Bot, method: TelegramMethod[Any], timeout: int | None = None) -> Any:
        self.requests.append(method)
        if isinstance(method, GetMe):
            return BOT_USER
        if isinstance(method, SendMessage):
            return Message(message_id=next(_ids), date=datetime.now(UTC),
                           chat=Chat(id=method.chat_id, type="private"), text=method.text,
                           reply_markup=method.reply_markup, from_user=BOT_USER)
        return True

    def sent(self) -> list[SendMessage]:
        return [r for r in self.requests if isinstance(r, SendMessage)]

    def answers(self) -> list[AnswerCallbackQuery]:
        return [r for r in self.requests if isinstance(r, AnswerCallbackQuery)]

    def clear(self) -> None:
        self.requests.clear()


def person(telegram_id: int, first_name: str = "Test", language: str = "zh-hans") -> User:
    return User(id=telegram_id, is_bot=False, first_name=first_name, language_code=language)


def text_update(sender: User, text: str, chat_type: str = "private") -> Update:
    chat = Chat(id=sender.id, type=chat_type)
    message = Message(message_id=next(_ids), date=datetime.now(UTC), chat=chat, from_user=sender, text=text)
    return Update(update_id=next(_ids), message=message)


def sticker_update(sender: User) -> Update:
    from aiogram.types import Sticker

    chat = Chat(id=sender.id, type="private")
    sticker = Sticker(file_id="x", file_unique_id="x", type="regular", width=1, height=1, is_animated=False,
                      is_video=False)
    message = Message(message_id=next(_ids), date=datetime.now(UTC), chat=chat, from_user=sender, sticker=sticker)
    return Update(update_id=next(_ids), message=message)


def button_update(sender: User, data: str) -> Update:
    chat = Chat(id=sender.id, type="private")
    message = Message(message_id=next(_ids), date=datetime.now(UTC), chat=chat, from_user=BOT_USER, text="…")
    callback = CallbackQuery(id=str(next(_ids)), from_user=sender, chat_instance="ci", data=data, message=message)
    return Update(update_id=next(_ids), callback_query=callback)
