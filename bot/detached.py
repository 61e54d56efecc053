"""Work an update starts but does not wait for: a manager's report (issue 18).

Long polling confirms updates in order: an update still running holds the offset, and Telegram hands out
at most 100 updates past it. While one manager's workbook took 20 s to build, every rep's next message
lay beyond those 100 and waited — the load bench saw 16 s without a reply to anyone. So an update whose
answer takes seconds says "working on it" and ends; the work goes on in a task of its own (its heavy part
in the worker process, bot.background) and sends its answer when ready, or a "did not work, try again"
in the user's language. Nothing is saved by such work, so a crash during it loses only that answer: the
user asks again. At shutdown the running ones get a few seconds, then are cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from aiogram.types import Message
from aiogram.utils.i18n import gettext as _

log = logging.getLogger("fieldcrm")

_RUNNING: set[asyncio.Task] = set()


def detach(work: Callable[[], Awaitable[None]], *, chat: Message, what: str) -> asyncio.Task:
    """Run `work()` after the update ends (the update's context — language, ids for the log — goes along);
    if it fails, the chat of `chat` is told so. `what` names it in the log."""

    async def run() -> None:
        try:
            await work()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s failed", what)
            with contextlib.suppress(Exception):
                await chat.answer(_("Sorry, that did not work. Please try again in a moment."))

    task = asyncio.create_task(run(), name=f"fieldcrm-detached-{what}")
    _RUNNING.add(task)
    task.add_done_callback(_RUNNING.discard)
    return task


async def settle(timeout: float | None = None) -> None:
    """Wait for the detached work running now (tests; shutdown: `timeout`, then what is left is cancelled)."""
    while _RUNNING:
        _done, late = await asyncio.wait(set(_RUNNING), timeout=timeout)
        if late:
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
            return
