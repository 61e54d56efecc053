"""Webhook mode: the bot tells the Bot API where to POST, with a secret; updates come in over HTTP on
127.0.0.1 (from the sandbox's stand-in, as Telegram would send them) and are answered; a request without
the secret changes nothing."""

from __future__ import annotations

import asyncio
import socket

import httpx
from sqlalchemy import func, select

from bot.app import create_bot, create_dispatcher
from bot.db import make_sessionmaker
from bot.runner import run_webhook
from bot.sandbox.app import Controls, Persona, create_app
from bot.sandbox.server import serving
from bot.sandbox.telegram import BotApi
from bot.settings import Settings
from models import User
from services.lookup import build_index
from services.users import add_user

TOKEN = "777000:webhook-test"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_updates_arrive_by_webhook_with_the_secret_and_get_answers(engine, tmp_path):
    sessions = make_sessionmaker(engine)
    async with sessions() as session:
        await add_user(session, name="Lee", telegram_id=501, language="en")
        await session.commit()
    api = BotApi(TOKEN)
    stand_in = create_app(api, Controls(personas=[Persona(501, "Lee", "rep", "en"), Persona(502, "Eve", "guest", "en")]))
    port = free_port()
    async with serving(stand_in) as api_url:
        settings = Settings(_env_file=None, bot_token=TOKEN, bot_api_url=api_url, data_dir=tmp_path,
                            webhook_url=f"http://127.0.0.1:{port}/hooks/telegram", webhook_secret="s3cret-Token",
                            http_port=port)
        async with sessions() as session:
            index = await build_index(session)
        bot = create_bot(settings)
        dispatcher = create_dispatcher(settings, sessions, index)
        stop = asyncio.Event()
        running = asyncio.create_task(run_webhook(bot, dispatcher, sessions, settings, index, stop=stop))
        try:
            for _ in range(100):
                if api.webhook["url"]:
                    break
                await asyncio.sleep(0.05)
            assert api.webhook == {"url": f"http://127.0.0.1:{port}/hooks/telegram", "secret_token": "s3cret-Token"}
            async with httpx.AsyncClient() as http:
                await http.post(f"{api_url}/sandbox/send", json={"user": 501, "text": "/settings"})
                await http.post(f"{api_url}/sandbox/send", json={"user": 502, "text": "hello"})
                replies = {}
                for _ in range(100):
                    for user in (501, 502):
                        events = (await http.get(f"{api_url}/sandbox/feed", params={"user": user})).json()["result"]
                        bot_says = [e for e in events["events"] if e["type"] == "message"
                                    and e["message"]["from"]["is_bot"]]
                        if bot_says:
                            replies[user] = bot_says[-1]["message"]["text"]
                    if len(replies) == 2:
                        break
                    await asyncio.sleep(0.1)
                assert "Your settings" in replies[501] and "ask your admin" in replies[502]
                # Without the secret (or with a wrong one): 401, and nothing happens.
                forged = {"update_id": 99, "message": {"message_id": 1, "date": 0, "chat": {"id": 502, "type": "private"},
                                                       "from": {"id": 502, "is_bot": False, "first_name": "Eve"},
                                                       "text": "/start"}}
                hook = f"http://127.0.0.1:{port}/hooks/telegram"
                assert (await http.post(hook, json=forged)).status_code == 401
                assert (await http.post(hook, json=forged, headers={
                    "X-Telegram-Bot-Api-Secret-Token": "wrong"})).status_code == 401
                health = (await http.get(f"http://127.0.0.1:{port}/health")).json()
                assert health["ok"] is True and health["database"] == "ok" and "reminders.scan" in health["scheduler"]
                # Telegram retries a webhook call it did not see answered: the same update is applied once.
                def bot_messages(events):
                    return [e for e in events if e["type"] == "message" and e["message"]["from"]["is_bot"]]
                before = len(bot_messages((await http.get(f"{api_url}/sandbox/feed", params={"user": 501})).json()
                                          ["result"]["events"]))
                retried = {"update_id": 777001, "message": {
                    "message_id": 9001, "date": 0, "chat": {"id": 501, "type": "private"},
                    "from": {"id": 501, "is_bot": False, "first_name": "Lee"}, "text": "/settings",
                    "entities": [{"type": "bot_command", "offset": 0, "length": 9}]}}
                secret = {"X-Telegram-Bot-Api-Secret-Token": "s3cret-Token"}
                for _ in range(3):
                    assert (await http.post(hook, json=retried, headers=secret)).status_code == 200
                after = len(bot_messages((await http.get(f"{api_url}/sandbox/feed", params={"user": 501})).json()
                                         ["result"]["events"]))
                assert after == before + 1
        finally:
            stop.set()
            await asyncio.wait_for(running, 30)
            await bot.session.close()
    async with sessions() as session:
        assert await session.scalar(select(func.count(User.id))) == 1  # the stranger got no account
