"""Driving the real Dispatcher in tests: a bot session that records every API call and answers like
Telegram, and helpers that build updates as Telegram sends them."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any

from aiogram import Bot
from aiogram.client.session.base import BaseSession
from aiogram.methods import AnswerCallbackQuery, GetFile, GetMe, SendMessage, TelegramMethod
from aiogram.types import CallbackQuery, Chat, File, InlineKeyboardMarkup, Message, Update, User

BOT_USER = User(id=4242, is_bot=True, first_name="FieldCRM", username="fieldcrm_test_bot")
_ids = itertools.count(1)


class RecordingSession(BaseSession):
    def __init__(self) -> None:
        super().__init__()
        self.requests: list[TelegramMethod[Any]] = []
        self.files: dict[str, bytes] = {}  # file_id → what getFile and the file download give (photos people send)

    async def close(self) -> None:
        pass

    async def stream_content(self, url: str, *args: Any, **kwargs: Any):
        data = self.files.get(url.rsplit("/", 1)[-1], b"")
        for start in range(0, len(data), 65536):
            yield data[start:start + 65536]

    async def make_request(self, bot: Bot, method: TelegramMethod[Any], timeout: int | None = None) -> Any:
        self.requests.append(method)
        if isinstance(method, GetMe):
            return BOT_USER
        if isinstance(method, GetFile):
            if method.file_id not in self.files:
                from aiogram.exceptions import TelegramBadRequest

                raise TelegramBadRequest(method=method, message="Bad Request: invalid file_id")
            return File(file_id=method.file_id, file_unique_id="u" + method.file_id,
                        file_size=len(self.files[method.file_id]), file_path=f"photos/{method.file_id}")
        if isinstance(method, SendMessage):
            # Telegram echoes only an inline keyboard in the sent message (a reply keyboard stays client-side).
            inline = method.reply_markup if isinstance(method.reply_markup, InlineKeyboardMarkup) else None
            return Message(message_id=next(_ids), date=datetime.now(UTC),
                           chat=Chat(id=method.chat_id, type="private"), text=method.text,
                           reply_markup=inline, from_user=BOT_USER)
        return True

    def sent(self) -> list[SendMessage]:
        return [r for r in self.requests if isinstance(r, SendMessage)]

    def answers(self) -> list[AnswerCallbackQuery]:
        return [r for r in self.requests if isinstance(r, AnswerCallbackQuery)]

    def clear(self) -> None:
        self.requests.clear()


def person(telegram_id: int, first_name: str = "Test", language: str = "zh-hans") -> User:
    return User(id=telegram_id, is_bot=False, first_name=first_name, language_code=language)


def text_update(sender: User, text: str, chat_type: str = "private", chat_id: int | None = None) -> Update:
    chat = Chat(id=chat_id or sender.id, type=chat_type)
    message = Message(message_id=next(_ids), date=datetime.now(UTC), chat=chat, from_user=sender, text=text)
    return Update(update_id=next(_ids), message=message)


def sticker_update(sender: User) -> Update:
    from aiogram.types import Sticker

    chat = Chat(id=sender.id, type="private")
    sticker = Sticker(file_id="x", file_unique_id="x", type="regular", width=1, height=1, is_animated=False,
                      is_video=False)
    message = Message(message_id=next(_ids), date=datetime.now(UTC), chat=chat, from_user=sender, sticker=sticker)
    return Update(update_id=next(_ids), message=message)


def button_update(sender: User, data: str, on: Any = None, chat_id: int | None = None) -> Update:
    """A tap on an inline button; `on` is the sent message (a SendMessage) that carries it."""
    chat = Chat(id=chat_id or sender.id, type="private" if chat_id is None else "group")
    message = Message(message_id=next(_ids), date=datetime.now(UTC), chat=chat,
                      from_user=BOT_USER, text=on.text if on else "…", reply_markup=on.reply_markup if on else None)
    callback = CallbackQuery(id=str(next(_ids)), from_user=sender, chat_instance="ci", data=data, message=message)
    return Update(update_id=next(_ids), callback_query=callback)


def location_update(sender: User, latitude: float, longitude: float) -> Update:
    from aiogram.types import Location

    chat = Chat(id=sender.id, type="private")
    message = Message(message_id=next(_ids), date=datetime.now(UTC), chat=chat, from_user=sender,
                      location=Location(latitude=latitude, longitude=longitude))
    return Update(update_id=next(_ids), message=message)


def photo_update(sender: User, caption: str | None = None, file_id: str = "big-photo-id",
                 file_size: int | None = None) -> Update:
    from aiogram.types import PhotoSize

    chat = Chat(id=sender.id, type="private")
    photo = [PhotoSize(file_id="small", file_unique_id="s", width=90, height=90),
             PhotoSize(file_id=file_id, file_unique_id="b", width=1280, height=960, file_size=file_size)]
    message = Message(message_id=next(_ids), date=datetime.now(UTC), chat=chat, from_user=sender, photo=photo,
                      caption=caption)
    return Update(update_id=next(_ids), message=message)


def document_update(sender: User, file_id: str, *, mime_type: str = "image/jpeg", file_name: str = "card.jpg",
                    file_size: int | None = None) -> Update:
    """A file sent as a document (uncompressed), e.g. a photo of a card sent "as a file"."""
    from aiogram.types import Document

    chat = Chat(id=sender.id, type="private")
    document = Document(file_id=file_id, file_unique_id="d" + file_id, file_name=file_name, mime_type=mime_type,
                        file_size=file_size)
    message = Message(message_id=next(_ids), date=datetime.now(UTC), chat=chat, from_user=sender, document=document)
    return Update(update_id=next(_ids), message=message)


class App:
    """The real Dispatcher over a test database, with a recording bot session."""

    def __init__(self, dispatcher, bot, recorder: RecordingSession, sessions, index) -> None:
        self.dispatcher, self.bot, self.recorder, self.sessions, self.index = dispatcher, bot, recorder, sessions, index

    async def send(self, update: Update) -> RecordingSession:
        from bot.detached import settle

        self.recorder.clear()
        await self.dispatcher.feed_update(self.bot, update)
        await settle()  # what the update left running (a report being made) answers too
        return self.recorder

    async def sync(self) -> None:
        from services.lookup import sync

        async with self.sessions() as session:
            await sync(self.index, session)


async def make_app(engine, *, loading: bool = False, **settings: Any) -> App:
    """`loading`: the bot as it is just after a start, its lookup index still being built (exact names only)."""
    from bot.app import create_bot, create_dispatcher
    from bot.db import make_sessionmaker
    from bot.settings import Settings
    from services.lookup import build_index, start_index

    sessions = make_sessionmaker(engine)
    async with sessions() as session:
        index = await (start_index(session) if loading else build_index(session))
    config = Settings(_env_file=None, bot_token="42:TEST", default_language="zh_Hans", **settings)
    recorder = RecordingSession()
    return App(create_dispatcher(config, sessions, index), create_bot(config, session=recorder), recorder,
               sessions, index)


def inline_update(sender: User, query: str, chat_type: str | None = "sender") -> Update:
    """`@bot query` typed in a chat: "sender" is the person's own chat with the bot, "group" a group chat."""
    from aiogram.types import InlineQuery

    return Update(update_id=next(_ids), inline_query=InlineQuery(id=str(next(_ids)), from_user=sender, query=query,
                                                                 offset="", chat_type=chat_type))
