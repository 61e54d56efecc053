"""The real product through a Bot API emulator nobody on the project wrote: telegram-test-api (npm).

It lacks setMyCommands, its getMe has no is_bot, its button taps carry no chat_instance and no message
id: the bot must start anyway, answer people, take taps, and stop cleanly on SIGTERM. The test installs
the emulator (a pinned version, into tests/.emulator/, gitignored) the first time it runs; it needs Node.js
and the npm registry, as CI has (under CI=true a missing npm fails the run instead of skipping).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent / ".emulator"
VERSION = "4.2.1"
TOKEN = "555000:third-party-emulator"
ADMIN, STRANGER = 9100, 9200
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
pytestmark = pytest.mark.e2e


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def emulator():
    if shutil.which("npm") is None or shutil.which("node") is None:
        if IN_CI:
            pytest.fail("Node.js and npm are needed for the third-party emulator test under CI=true")
        pytest.skip("Node.js / npm are not installed")
    package = HERE / "node_modules" / "telegram-test-api" / "package.json"
    if not package.exists() or f'"version": "{VERSION}"' not in package.read_text():
        HERE.mkdir(exist_ok=True)
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--silent", "--prefix", str(HERE),
                        f"telegram-test-api@{VERSION}"], check=True, timeout=240, capture_output=True)
    port = free_port()
    script = (f"const S = require('telegram-test-api'); new S({{port: {port}, host: '127.0.0.1', storeTimeout: 120}})"
              ".start().then(() => console.log('ready'));")
    node = subprocess.Popen(["node", "-e", script], cwd=HERE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert node.stdout.readline().strip() == "ready"
    yield f"http://127.0.0.1:{port}"
    node.terminate()
    node.wait(10)


class Person:
    def __init__(self, url: str, telegram_id: int, name: str) -> None:
        self.url, self.id, self.name = url, telegram_id, name

    def _base(self) -> dict:
        user = {"id": self.id, "first_name": self.name, "username": f"u{self.id}", "is_bot": False,
                "language_code": "en"}
        return {"botToken": TOKEN, "date": int(time.time()), "from": user,
                "chat": {"id": self.id, "first_name": self.name, "type": "private"}}

    def say(self, text: str, wait: float = 15) -> list[dict]:
        body = {**self._base(), "text": text}
        if text.startswith("/"):
            body["entities"] = [{"offset": 0, "length": len(text.split()[0]), "type": "bot_command"}]
        httpx.post(f"{self.url}/sendMessage", json=body, timeout=10).raise_for_status()
        return self.replies(wait)

    def tap(self, data: str) -> list[dict]:
        base = self._base()
        body = {"botToken": TOKEN, "date": base["date"], "from": base["from"], "data": data,
                "message": {"from": base["from"], "chat": base["chat"]}}
        httpx.post(f"{self.url}/sendCallback", json=body, timeout=10).raise_for_status()
        return self.replies()

    def replies(self, wait: float = 15) -> list[dict]:
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            answer = httpx.post(f"{self.url}/getUpdates", json={"token": TOKEN, "chatId": self.id}, timeout=10).json()
            if answer.get("result"):
                return [u["message"] for u in answer["result"]]
            time.sleep(0.1)
        return []


def test_the_bot_runs_through_telegram_test_api(emulator, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "WEBHOOK_URL")}
    env.update(BOT_TOKEN=TOKEN, BOT_API_URL=emulator, ADMIN_IDS=str(ADMIN), DATA_DIR=str(tmp_path / "data"),
               DEFAULT_LANGUAGE="en", FIELDCRM_NO_BOOTSTRAP="1", LOG_LEVEL="WARNING", PYTHONUNBUFFERED="1")
    subprocess.run([sys.executable, str(ROOT / "main.py"), "demo-data", "--customers", "20"], cwd=tmp_path, env=env,
                   check=True, capture_output=True, timeout=120)
    log = (tmp_path / "bot.log").open("w")
    bot = subprocess.Popen([sys.executable, str(ROOT / "main.py"), "run"], cwd=tmp_path, env=env, stdout=log,
                           stderr=subprocess.STDOUT)
    try:
        admin, stranger = Person(emulator, ADMIN, "Boss"), Person(emulator, STRANGER, "Eve")
        [welcome] = admin.say("/start", wait=90)  # the bot may still be starting (a busy machine: 20 s and more)
        assert welcome["text"].startswith("Welcome, Boss!"), welcome
        assert bot.poll() is None  # setMyCommands is unknown to the emulator: logged, not fatal
        [unknown] = admin.say("zzzz-no-such-customer")
        assert "No customer matches" in unknown["text"]
        button = unknown["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
        [asked] = admin.tap(button)  # a tap without chat_instance or message id, as the emulator sends it
        assert "main phone number" in asked["text"]
        [cancelled] = admin.say("/cancel")
        assert cancelled["text"].startswith("Cancelled")
        [invitation] = admin.say("/invite rep")
        assert "usable once" in invitation["text"]
        # /settings → ⏱ Visit length → 45 min: the choice is an edit of a message the emulator's tap names
        # by no id; the choice must hold all the same, and /route plan with it.
        [shown] = admin.say("/settings")
        buttons = {b["text"]: b["callback_data"] for row in shown["reply_markup"]["inline_keyboard"] for b in row}
        [choices] = admin.tap(buttons["⏱ Visit length"])
        minutes = {b["text"]: b["callback_data"] for row in choices["reply_markup"]["inline_keyboard"] for b in row}
        admin.tap(minutes["45 min"])
        [shown] = admin.say("/settings")
        assert "Visit length for /route: 45 min" in shown["text"], shown["text"]
        [route] = admin.say("/route")
        assert "visit today" in route["text"], route["text"]
        [hint] = stranger.say("hello")
        assert "ask your admin for an invitation" in hint["text"]
    finally:
        bot.send_signal(signal.SIGTERM)
        code = bot.wait(40)
        log.close()
    output = (tmp_path / "bot.log").read_text()
    assert code == 0 and "Traceback" not in output, output[-3000:]
