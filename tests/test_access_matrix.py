"""Who may do what to which customer: every role × every card action × own / team / other team / unassigned
customer, through the real Dispatcher with forged buttons (a button is no permission)."""

from __future__ import annotations

import pytest
from aiogram.methods import EditMessageText, SendMessage
from sqlalchemy import select

from bot.callbacks import (
    ContactCallback,
    CustomerCallback,
    EditCallback,
    FeedbackCallback,
    HistoryCallback,
    LogCallback,
    OrderCallback,
    ReassignCallback,
    StageCallback,
)
from models import AuditLog, Role
from services.customers import create_customer
from services.users import add_user, set_active
from tests.botkit import button_update, inline_update, make_app, person, text_update

ACTIONS = {
    "card": lambda c: CustomerCallback(action="card", id=c),
    "visit": lambda c: LogCallback(kind="visit", id=c),
    "call": lambda c: LogCallback(kind="call", id=c),
    "order": lambda c: OrderCallback(step="start", id=c),
    "feedback": lambda c: FeedbackCallback(step="start", id=c),
    "history": lambda c: HistoryCallback(id=c, new=True),
    "contacts": lambda c: ContactCallback(step="list", id=c),
    "add contact": lambda c: ContactCallback(step="add", id=c),
    "stage": lambda c: StageCallback(id=c),
    "set stage": lambda c: StageCallback(id=c, stage="hesitating"),
    "edit": lambda c: EditCallback(id=c),
    "edit field": lambda c: EditCallback(id=c, field="address"),
    "reassign": lambda c: ReassignCallback(customer=c),
}
CUSTOMERS = ("own", "teammate", "other team", "unassigned")
# role → customers they may act on (services/access.py); reassigning is for managers and admins only.
SEES = {
    "rep": {"own", "unassigned"},
    "rep, unassigned hidden": {"own"},
    "manager": {"own", "teammate", "unassigned"},
    "admin": set(CUSTOMERS),
    "unknown": set(),  # no account
    "disabled": set(),  # an account an admin switched off
}
TG = {"rep": 7001, "rep, unassigned hidden": 7001, "manager": 7002, "admin": 7003, "unknown": 7099, "disabled": 7004}


@pytest.fixture(params=list(SEES))
async def world(request, engine):
    role = request.param
    app = await make_app(engine, reps_see_unassigned=role != "rep, unassigned hidden")
    async with app.sessions() as session:
        admin = await add_user(session, name="Admin", role=Role.admin, telegram_id=TG["admin"], language="en")
        manager = await add_user(session, name="Manager", role=Role.manager, telegram_id=TG["manager"],
                                 language="en", manager_id=admin.id)
        rep = await add_user(session, name="Rep", telegram_id=TG["rep"], language="en", manager_id=manager.id)
        mate = await add_user(session, name="Mate", language="en", manager_id=manager.id)
        other_manager = await add_user(session, name="Other manager", role=Role.manager, language="en")
        stranger = await add_user(session, name="Other rep", language="en", manager_id=other_manager.id)
        gone = await add_user(session, name="Gone", telegram_id=TG["disabled"], language="en", manager_id=manager.id)
        await set_active(session, gone.id, False, by_user_id=admin.id)
        owners = {"own": {"rep": rep, "rep, unassigned hidden": rep, "manager": manager, "admin": admin,
                          "unknown": rep, "disabled": gone}[role].id,
                  "teammate": mate.id if role != "manager" else rep.id, "other team": stranger.id, "unassigned": None}
        if role == "admin":
            owners["teammate"] = manager.id
        ids = {}
        for which, owner in owners.items():
            ids[which] = (await create_customer(session, name=f"客户{which}", owner_id=owner)).id
        await session.commit()
    await app.sync()
    return app, role, ids


async def test_every_role_every_action_every_customer(world):
    app, role, ids = world
    user = person(TG[role], language="en")
    allowed_customers = SEES[role]
    for which in CUSTOMERS:
        for action, make in ACTIONS.items():
            await app.send(text_update(user, "/cancel"))
            recorder = await app.send(button_update(user, make(ids[which]).pack()))
            acted = any(isinstance(r, (SendMessage, EditMessageText)) for r in recorder.requests)
            refused = any(a.show_alert for a in recorder.answers())
            expected = which in allowed_customers and (action != "reassign" or not role.startswith("rep"))
            assert (acted, refused) == (expected, not expected), (role, which, action)
    # Nothing was changed by the refused attempts: the only customer changes are the allowed stage changes.
    async with app.sessions() as session:
        changed = set((await session.execute(select(AuditLog.entity_id).where(
            AuditLog.entity == "customer", AuditLog.action == "update"))).scalars())
    assert changed == {ids[w] for w in allowed_customers}


async def test_search_and_inline_show_only_what_the_role_may_see(world):
    app, role, ids = world
    user = person(TG[role], language="en")
    [reply] = (await app.send(text_update(user, "客户"))).sent()
    listed = {b.callback_data for row in reply.reply_markup.inline_keyboard for b in row} if reply.reply_markup else set()
    shown = {w for w in CUSTOMERS if CustomerCallback(action="card", id=ids[w]).pack() in listed
             or reply.text.startswith(f"<b>客户{w}</b>")}
    assert shown == SEES[role]
    recorder = await app.send(inline_update(user, "客户"))
    titles = {r.title for r in recorder.requests[-1].results}
    assert titles == {f"客户{w}" for w in SEES[role]}


COMMANDS = ["/today", "/find 客户", "/nearby", "/new 新客户", "/history 客户", "/settings", "/lang", "/report",
            "/invite", "/invite admin", "/bindteam"]
# role → the commands that do something for them (the others get a refusal or the stranger's answer)
MAY = {
    "rep": {"/today", "/find 客户", "/nearby", "/new 新客户", "/history 客户", "/settings", "/lang"},
    "manager": {"/today", "/find 客户", "/nearby", "/new 新客户", "/history 客户", "/settings", "/lang", "/report",
                "/invite"},
    "admin": set(COMMANDS) - {"/bindteam"},  # /bindteam is for group chats
    "unknown": set(), "disabled": set(),
}
MAY["rep, unassigned hidden"] = MAY["rep"]
STRANGER_ANSWER = "This bot is for our sales team"


async def test_every_role_every_command(world):
    """Each command by each role: a stranger or a disabled account gets only the invitation hint; a rep's
    /report and /invite are refused with the reason; nothing is changed by a refused command."""
    app, role, ids = world
    user = person(TG[role], language="en")
    for command in COMMANDS:
        await app.send(text_update(user, "/cancel"))
        replies = [m.text for m in (await app.send(text_update(user, command))).sent()]
        assert replies, (role, command)  # every command is answered
        outsider = all(STRANGER_ANSWER in r for r in replies)
        if not MAY[role]:
            assert outsider, (role, command, replies)
        else:
            assert not outsider, (role, command, replies)
    async with app.sessions() as session:
        assert not (await session.execute(select(AuditLog.id).where(AuditLog.entity == "invite"))).first() \
            or role in ("manager", "admin")


async def test_disabling_a_rep_takes_effect_at_once_even_mid_conversation(engine):
    from bot.callbacks import OrderCallback
    from models import Purchase

    app = await make_app(engine)
    async with app.sessions() as session:
        admin = await add_user(session, name="Admin", role=Role.admin, telegram_id=7003, language="en")
        rep = await add_user(session, name="Rep", telegram_id=7001, language="en")
        customer = await create_customer(session, name="客户甲", owner_id=rep.id)
        await session.commit()
    await app.sync()
    user = person(7001, language="en")
    [card] = (await app.send(text_update(user, "客户甲"))).sent()
    await app.send(button_update(user, OrderCallback(step="start", id=customer.id).pack()))
    await app.send(text_update(user, "12,800"))
    async with app.sessions() as session:
        await set_active(session, rep.id, False, by_user_id=admin.id)
        await session.commit()
    [reply] = (await app.send(text_update(user, "2 servers"))).sent()
    assert STRANGER_ANSWER in reply.text
    old_button = await app.send(button_update(user, OrderCallback(step="day", days_ago=0).pack(), on=card))
    assert old_button.answers()[0].show_alert and not old_button.sent()
    inline = await app.send(inline_update(user, "客户"))
    assert inline.requests[-1].results == []
    async with app.sessions() as session:
        assert (await session.execute(select(Purchase.id))).first() is None
