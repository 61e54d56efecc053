"""A forged or garbled button of every kind — an unknown value, a number too large for the database, a
field missing — is refused when its data is unpacked: the person gets an alert, nothing changes."""

from __future__ import annotations

import pytest
from aiogram.filters.callback_data import CallbackData
from sqlalchemy import func, select

import bot.callbacks as callbacks
from models import AuditLog, Role
from services.customers import create_customer
from services.users import add_user
from tests.botkit import button_update, make_app, person

KINDS = [c for c in vars(callbacks).values()
         if isinstance(c, type) and issubclass(c, CallbackData) and c is not CallbackData]


def forgeries(kind: type[CallbackData]) -> list[str]:
    prefix, fields = kind.__prefix__, list(kind.model_fields)
    return [
        ":".join([prefix, *["9" * 20] * len(fields)]),  # numbers far beyond any id
        ":".join([prefix, *["🦄"] * len(fields)]),  # values no field takes
        ":".join([prefix, *["-5"] * len(fields)]),
        prefix,  # every field missing
    ]


@pytest.fixture
async def app(engine):
    app = await make_app(engine)
    async with app.sessions() as session:
        admin = await add_user(session, name="Admin", role=Role.admin, telegram_id=9301, language="en")
        await create_customer(session, name="客户甲", owner_id=admin.id)
        await session.commit()
    await app.sync()
    return app


def test_every_kind_of_button_is_covered():
    assert len(KINDS) >= 16


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.__name__)
async def test_a_forged_button_of_every_kind_gets_an_alert_and_changes_nothing(app, kind):
    async with app.sessions() as session:
        before = await session.scalar(select(func.count(AuditLog.id)))
    for data in forgeries(kind):
        recorder = await app.send(button_update(person(9301, language="en"), data))
        [answer] = recorder.answers()
        assert answer.show_alert and answer.text, (data, answer)
        assert not recorder.sent(), data
    async with app.sessions() as session:
        assert await session.scalar(select(func.count(AuditLog.id))) == before


def test_the_report_buttons_know_every_analysis():
    from typing import get_args

    from bot.callbacks import ReportCallback
    from services.reports import ANALYSES

    assert set(get_args(ReportCallback.model_fields["show"].annotation)) == {"summary", "xlsx", "reps", *ANALYSES}
