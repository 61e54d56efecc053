"""Admins can read who changed what: /audit for a customer in the bot, `export audit` for everything."""

from __future__ import annotations

import csv

from bot.callbacks import OrderCallback
from bot.cli import main
from models import Role
from services.customers import create_customer
from services.users import add_user
from tests.botkit import button_update, make_app, person, text_update


async def test_an_admin_reads_a_customers_trail_and_a_rep_is_told_it_is_for_admins(engine):
    app = await make_app(engine)
    async with app.sessions() as session:
        await add_user(session, name="Alice", role=Role.admin, telegram_id=9001, language="en")
        rep = await add_user(session, name="王业务", telegram_id=9002, language="en")
        customer = await create_customer(session, name="上海恒达物流股份有限公司", short_name="恒达物流", owner_id=rep.id,
                                         user_id=rep.id)
        await session.commit()
    await app.sync()
    seller = person(9002, language="en")
    await app.send(button_update(seller, OrderCallback(step="start", id=customer.id).pack()))
    await app.send(text_update(seller, "12,800"))
    await app.send(text_update(seller, "servers"))
    await app.send(text_update(seller, "2026-01-05"))
    [trail] = (await app.send(text_update(person(9001, language="en"), "/audit 恒达"))).sent()
    lines = trail.text.splitlines()
    assert lines[0].startswith("<b>Audit trail of 上海恒达物流股份有限公司</b>")
    assert "王业务 · created order" in lines[1] and "1280000" in lines[2]  # newest first
    assert any("created customer" in line for line in lines)
    [refused] = (await app.send(text_update(seller, "/audit 恒达"))).sent()
    assert refused.text == "only admins can read the audit trail"


def test_export_audit_lists_every_change_with_who_made_it(cli_env, tmp_path, capsys):
    assert main(["--lang", "en", "user", "add", "Boss", "--role", "admin"]) == 0
    assert main(["--lang", "en", "demo-data", "--customers", "5"]) == 0
    out = tmp_path / "audit.csv"
    assert main(["--lang", "en", "export", "audit", "-o", str(out)]) == 0
    with out.open(encoding="utf-8-sig") as fh:
        rows = list(csv.DictReader(fh))
    assert rows and {"at", "user", "actor", "action", "entity", "entity_id", "changes"} == set(rows[0])
    boss = next(r for r in rows if r["entity"] == "user" and r["action"] == "create")
    assert boss["actor"] == "cli" and '"Boss"' in boss["changes"]
    assert any(r["entity"] == "customer" and r["action"] == "demo_data" for r in rows)
