"""The presenter the scheduled jobs take with them (jobs.reminders.Runtime.present): bot.notify.BotPresenter,
loaded when a job first words a message.

A long job runs in the bot's worker process with a pickled copy of its runtime (jobs.reminders.apart).
Unpickling the presenter itself imported bot.notify, and with it aiogram: 4.6 s before every new worker's
first job, the RFM scores and the reports included, which never word a message. This stand-in is unpickled
by importing this module only; bot.notify comes in when a job asks for a wording (a digest, an escalation)."""

from __future__ import annotations

from typing import Any


class LazyPresenter:
    """bot.notify.BotPresenter's wordings, that module imported on first use."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):  # pickle's and copy's look-ups (__setstate__ …) never load the bot
            raise AttributeError(name)
        from bot.notify import BotPresenter

        return getattr(BotPresenter, name)
