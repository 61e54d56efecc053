"""Thousands of random updates of every type through the real dispatcher, as real clients send them:
channel posts and messages without a sender, anonymous group admins, huge ids, forged and truncated
button data, locations off the planet, stickers inside conversations, commands with odd arguments,
photos and files with and without file ids (junk, too big, gone, a business card).

Nothing may escape as an exception or be logged as an unexpected error; every button tap is answered;
strangers and disabled accounts change nothing; another team's customers are never changed.
"""

from __future__ import annotations

import itertools
import logging
from datetime import UTC, datetime

import pytest
from aiogram.methods import AnswerCallbackQuery
from aiogram.types import Update
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from models import AuditLog, ContactPerson, Customer, Role
from services.customers import create_customer
from services.users import add_user, set_active
from tests.botkit import make_app
from tests.in_worker import canned_read

REP, MANAGER, ADMIN, STRANGER, DISABLED, OTHER_REP = 6001, 6002, 6003, 6004, 6005, 6006
_ids = itertools.count(50_000_000)
HUGE = st.sampled_from([0, -1, 2**31, 2**53 + 1, 2**63 - 1, 10**20])
IDS = st.one_of(st.integers(-5, 50), HUGE)
PREFIXES = ["cust:card", "log:visit", "log:call", "next", "order:start", "order:day", "order:skip_products", "lang",
            "fb:start", "fb:kind", "fb:rating", "fb:resolve", "rem:snooze", "rem:done", "reas", "set:tz", "set:zone",
            "set:hours", "set:day", "hist", "new:start", "new:region", "edit", "stage", "cp:list", "cp:add",
            "cp:key", "cp:field", "near", "rep", "team", "route:plan", "route", "nc:save", "nc:fix", "nc:field",
            "nc:back", "nc:cancel", "nc:to", "nc:new", "nc:stage", "x", ""]
WORDS = ["/start", "/start bogus-code", "/invite", "/invite admin", "/invite 🦄", "/today", "/find", "/find 恒达",
         "/nearby", "/new", "/new " + "长" * 300, "/history", "/history 恒达", "/settings", "/cancel", "/lang",
         "/report", "/route", "▶️ Start at my first visit", "/bindteam", "/unbindteam", "取消", "恒达", "hengda", "hd",
         "138", "12,800", "1.2万", "-5", "0",
         "9-18", "25:00-99", "Mars/Olympus", "Asia/Shanghai", "明天", "2026-02-30", "3.15", "99999999999999999999",
         "", " ", "\u200b", "<b>bold</b>", "a" * 5000, "😀" * 50]


FILE_IDS = st.sampled_from(["card", "junk", "tiny", "blank", "unknown", ""])
FILE_SIZES = st.sampled_from([None, 0, 1000, 10**9])


def _png(side: int) -> bytes:
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (side, side), (250, 250, 250)).save(out, "PNG")
    return out.getvalue()


def senders():
    return st.sampled_from([REP, MANAGER, ADMIN, STRANGER, DISABLED, OTHER_REP, 1087968824, 2**40])


def user_dict(uid: int) -> dict:
    return {"id": uid, "is_bot": uid == 1087968824, "first_name": "F", "language_code": "en"}


@st.composite
def callback_data(draw) -> str:
    prefix = draw(st.sampled_from(PREFIXES))
    words = ["", "1", "complaint", "3", "Asia/Shanghai", "a:b", "visit", "visits", "600"]
    parts = draw(st.lists(st.one_of(IDS.map(str), st.sampled_from(words)), max_size=4))
    return ":".join([prefix, *parts])[: draw(st.sampled_from([64, 64, 64, 20, 5]))]


@st.composite
def updates(draw) -> dict:
    kind = draw(st.sampled_from(["text", "text", "text", "callback", "callback", "inline", "location", "sticker",
                                 "channel_post", "no_sender", "edited", "contact", "photo", "photo", "document",
                                 "member"]))
    uid = draw(senders())
    chat_type = draw(st.sampled_from(["private", "private", "group", "supergroup"]))
    chat_id = uid if chat_type == "private" else -draw(st.integers(1, 10**12))
    chat = {"id": chat_id, "type": chat_type}
    base = {"message_id": next(_ids), "date": int(datetime.now(UTC).timestamp()), "chat": chat}
    update_id = next(_ids)
    if kind == "callback":
        message = {**base, "from": user_dict(4242) | {"is_bot": True}, "text": "…"}
        return {"update_id": update_id, "callback_query": {"id": str(next(_ids)), "from": user_dict(uid),
                                                           "chat_instance": "c", "data": draw(callback_data()),
                                                           "message": message}}
    if kind == "inline":
        return {"update_id": update_id, "inline_query": {"id": str(next(_ids)), "from": user_dict(uid),
                                                         "query": draw(st.sampled_from(WORDS))[:256], "offset": ""}}
    if kind == "channel_post":
        return {"update_id": update_id, "channel_post": {**base, "chat": {"id": -100123, "type": "channel"},
                                                          "text": draw(st.sampled_from(WORDS)) or "x"}}
    if kind == "member":
        return {"update_id": update_id, "my_chat_member": {
            "chat": chat, "from": user_dict(uid), "date": base["date"],
            "old_chat_member": {"status": "left", "user": user_dict(4242)},
            "new_chat_member": {"status": "member", "user": user_dict(4242)}}}
    message = {**base, "from": user_dict(uid)}
    if kind == "no_sender":
        message.pop("from")
        message["text"] = draw(st.sampled_from(WORDS)) or "x"
    elif kind == "location":
        message["location"] = {"latitude": draw(st.floats(-200, 200, allow_nan=False)),
                               "longitude": draw(st.floats(-400, 400, allow_nan=False))}
    elif kind == "sticker":
        message["sticker"] = {"file_id": "s", "file_unique_id": "s", "type": "regular", "width": 1, "height": 1,
                              "is_animated": False, "is_video": False}
    elif kind == "contact":
        message["contact"] = {"phone_number": draw(st.sampled_from(["+8613800000000", "x", "1" * 40])),
                              "first_name": "C"}
    elif kind == "photo":  # a business card (handlers.namecard), or junk, or a file Telegram does not have
        sizes = [{"file_id": draw(FILE_IDS), "file_unique_id": "p", "width": 10, "height": 10,
                  "file_size": draw(FILE_SIZES)} for _ in range(draw(st.integers(0, 3)))]
        message["photo"] = sizes
        message["caption"] = draw(st.sampled_from(WORDS))[:1024] or None
    elif kind == "document":
        message["document"] = {"file_id": draw(FILE_IDS), "file_unique_id": "d", "file_size": draw(FILE_SIZES),
                               "mime_type": draw(st.sampled_from(["image/jpeg", "image/png", "application/pdf",
                                                                  None]))}
    else:
        message["text"] = draw(st.one_of(st.sampled_from(WORDS), st.text(max_size=80))) or "x"
    if kind == "edited":
        message["edit_date"] = base["date"]
        return {"update_id": update_id, "edited_message": message}
    return {"update_id": update_id, "message": message}


class Failures(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


async def snapshot(app, customer_id: int) -> tuple:
    async with app.sessions() as session:
        other = await session.get(Customer, customer_id)
        await session.refresh(other)
        return tuple(getattr(other, c) for c in ("name", "owner_id", "phone", "stage", "txn_count", "archived_at",
                                                  "last_contact_at"))


FUZZ_MINIMUM = 1000  # updates fed per backend in one run; fewer means the fuzz tested less than it claims


@pytest.fixture
async def world(engine, monkeypatch, request):
    import handlers.namecard

    monkeypatch.setattr(handlers.namecard, "read_card_work", canned_read)
    app = await make_app(engine, admin_ids=[ADMIN])
    app.recorder.files.update({"card": b"CARD", "junk": b"junk", "tiny": _png(16), "blank": _png(64)})
    async with app.sessions() as session:
        admin = await add_user(session, name="Admin", role=Role.admin, telegram_id=ADMIN, language="en")
        manager = await add_user(session, name="Manager", role=Role.manager, telegram_id=MANAGER, language="zh_Hant")
        rep = await add_user(session, name="Rep", telegram_id=REP, manager_id=manager.id, language="zh_Hans")
        other = await add_user(session, name="Other", telegram_id=OTHER_REP, language="en")
        gone = await add_user(session, name="Gone", telegram_id=DISABLED, language="en")
        await set_active(session, gone.id, False, by_user_id=admin.id)
        await create_customer(session, name="上海恒达物流股份有限公司", short_name="恒达物流", owner_id=rep.id)
        theirs = await create_customer(session, name="北京远方科技有限公司", short_name="远方科技", owner_id=other.id,
                                       phone="010-88886666")
        await session.commit()
    await app.sync()
    app.theirs, app.gone = theirs.id, gone.id
    app.before = await snapshot(app, theirs.id)
    app.backend = engine.dialect.name
    failures = Failures()
    for name in ("fieldcrm", "aiogram"):
        logging.getLogger(name).addHandler(failures)
    app.failures = failures
    app.fed = 0
    failed_before = request.session.testsfailed
    yield app
    for name in ("fieldcrm", "aiogram"):
        logging.getLogger(name).removeHandler(failures)
    # Checked here, after all of hypothesis's examples (the fixture lives for the whole test), not in a
    # test of its own: pytest-xdist may run that one in another process (its loadgroup is a no-op under
    # pytest 9.2). A failed fuzz has said what is wrong already.
    if request.session.testsfailed == failed_before:
        assert app.fed >= FUZZ_MINIMUM, f"the fuzz fed only {app.fed} updates on {app.backend}"


@settings(max_examples=250, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(batch=st.lists(updates(), min_size=1, max_size=12))
async def test_random_updates_of_every_type_never_crash_and_change_only_what_may_change(world, batch):
    app = world
    for raw in batch:
        update = Update.model_validate(raw, context={"bot": app.bot})
        app.recorder.clear()
        await app.dispatcher.feed_update(app.bot, update)  # raises if anything escapes
        app.fed += 1
        if update.callback_query is not None:
            answered = [r for r in app.recorder.requests if isinstance(r, AnswerCallbackQuery)]
            assert answered, f"button left spinning: {raw}"
        assert not app.failures.records, [f"{r.getMessage()} for {raw}" for r in app.failures.records]
    assert await snapshot(app, app.theirs) == app.before  # another rep's customer: nothing changed
    async with app.sessions() as session:  # … nor its contacts (a card's "add to this customer" is refused)
        assert await session.scalar(select(func.count(ContactPerson.id)).where(
            ContactPerson.customer_id == app.theirs)) == 0
    async with app.sessions() as session:
        assert await session.scalar(select(func.count(AuditLog.id)).where(AuditLog.user_id == app.gone)) == 0
