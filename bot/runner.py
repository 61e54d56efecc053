"""Run mode: the bot (long polling) with its lookup index kept in sync."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading

from aiogram import Bot, Dispatcher
from aiogram.types import BotCommand, BotCommandScopeChat, BotCommandScopeDefault
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.background import close_all, in_memory
from bot.i18n import gettext_for
from bot.memory import settle
from bot.settings import Settings
from models import Role, User
from services.lookup import (
    LookupIndex,
    SavedIndex,
    build_index,
    finish_loading,
    open_saved,
    save_index,
    start_index,
    sync,
)

log = logging.getLogger("fieldcrm")
SYNC_SECONDS = float(os.environ.get("FIELDCRM_LOOKUP_SYNC_SECONDS", "30"))  # the poll (tests may lengthen it)
MENU_RETRY_SECONDS = 600  # menus that failed at start are tried again every 10 minutes, for a day
MENU_TRIES = 144
# Telegram knows languages by two-letter code: Chinese clients get the Simplified menu.
MENU_LANGUAGES = {"zh": "zh_Hans", "en": "en"}


def commands(language: str, role: str) -> list[BotCommand]:
    _ = gettext_for(language)
    menu = [
        BotCommand(command="today", description=_("what to do today")),
        BotCommand(command="find", description=_("find a customer")),
        BotCommand(command="nearby", description=_("my customers near me")),
        BotCommand(command="route", description=_("plan my day: a route through today's visits")),
        BotCommand(command="new", description=_("add a customer")),
        BotCommand(command="history", description=_("a customer's history")),
        BotCommand(command="settings", description=_("time zone, working hours, language")),
        BotCommand(command="cancel", description=_("stop what you are doing")),
        BotCommand(command="lang", description=_("choose your language")),
    ]
    if role in (Role.manager, Role.admin):
        menu.append(BotCommand(command="report", description=_("team reports and analyses")))
        menu.append(BotCommand(command="invite", description=_("invite someone to the team")))
    if role == Role.admin:
        menu.append(BotCommand(command="audit", description=_("who changed what at a customer")))
    return menu


async def set_commands(bot: Bot, sessions: async_sessionmaker[AsyncSession], settings: Settings) -> int:
    """The command menu in each language, and the fuller one for each admin and manager.

    The menus are a convenience: a call Telegram refuses (an admin who never opened the bot gets
    `400 chat not found`, a Bot API server without setMyCommands answers 5xx) or a network error is
    logged and skipped, never raised. Returns how many menus could not be set."""
    calls: list[dict] = [dict(commands=commands(settings.default_language, Role.rep), scope=BotCommandScopeDefault())]
    calls += [dict(commands=commands(language, Role.rep), scope=BotCommandScopeDefault(), language_code=code)
              for code, language in MENU_LANGUAGES.items()]
    try:
        async with sessions() as session:
            leaders = (await session.execute(select(User).where(
                User.role.in_([Role.manager, Role.admin]), User.active.is_(True),
                User.telegram_id.is_not(None)))).scalars().all()
        calls += [dict(commands=commands(user.language, user.role), scope=BotCommandScopeChat(chat_id=user.telegram_id))
                  for user in leaders]
    except Exception:
        log.exception("reading the admins' and managers' menus failed")
        failed = 1
    else:
        failed = 0
    for call in calls:
        try:
            await bot.set_my_commands(**call)
        except Exception as exc:
            failed += 1
            log.warning("command menu for %s not set: %s", call["scope"].model_dump(exclude_none=True), exc)
    return failed


async def set_chat_menu(bot: Bot, chat_id: int, language: str, role: str) -> bool:
    """One person's command menu in their language (after /lang): best effort, a refusal is logged."""
    try:
        await bot.set_my_commands(commands(language, role), scope=BotCommandScopeChat(chat_id=chat_id))
    except Exception as exc:
        log.warning("command menu for chat %s not set: %s", chat_id, exc)
        return False
    return True


async def keep_menus(bot: Bot, sessions: async_sessionmaker[AsyncSession], settings: Settings,
                     retry_every: float | None = None, tries: int = MENU_TRIES) -> None:
    """While some menus could not be set at start, try again later (a first admin who opens the bot
    after it started gets their menu on the next round)."""
    for _ in range(tries):
        await asyncio.sleep(retry_every or MENU_RETRY_SECONDS)
        if await set_commands(bot, sessions, settings) == 0:
            return


async def wait_for_telegram(bot: Bot, *, first_wait: float = 1.0, longest_wait: float = 60.0) -> None:
    """Until Telegram answers getMe: a network outage at start delays the bot instead of ending it.
    A refused token is not retried (the CLI checks it before anything starts)."""
    from aiogram.exceptions import ClientDecodeError, TelegramUnauthorizedError
    from aiogram.types import User as TelegramUser

    wait = first_wait
    while True:
        try:
            await bot.me()
            return
        except TelegramUnauthorizedError:
            raise
        except ClientDecodeError as exc:
            # A Bot API server that leaves out fields Telegram always sends (telegram-test-api's getMe has
            # no is_bot): take what it did send rather than never starting.
            result = exc.data.get("result") if isinstance(exc.data, dict) else None
            if isinstance(result, dict) and isinstance(result.get("id"), int):
                log.warning("the Bot API server's getMe answer is incomplete; using it as it is: %s", result)
                bot._me = TelegramUser(**{"is_bot": True, "first_name": "bot", **result})
                return
            log.warning("Telegram's answer to getMe cannot be read (%s); trying again in %.0f s", exc, wait)
            await asyncio.sleep(wait)
            wait = min(longest_wait, wait * 2)
        except Exception as exc:
            log.warning("Telegram does not answer yet (%s); trying again in %.0f s", exc, wait)
            await asyncio.sleep(wait)
            wait = min(longest_wait, wait * 2)


# Customers per piece of a background build: each piece is pickled to a worker process in one call that
# holds the interpreter (20,000 held the bot's loop up to 0.2 s at a time; 5,000 about a quarter of that).
BACKGROUND_CHUNK = 5_000


def _save(built: LookupIndex, saved: SavedIndex) -> None:
    """Save a build for the next start; a failure (a full disk, a folder not writable) only costs that start
    a build, never this one."""
    try:
        save_index(built, saved.path, database=saved.database)
    except Exception:
        log.exception("the lookup index could not be saved to %s; the next start builds it again", saved.path)
    built.stamps = None  # (a million ids and times, kept only for this)


def _build_in_thread(url: str, workers: int | None, saved: SavedIndex | None = None,
                     stop: threading.Event | None = None) -> LookupIndex:
    """`build_index` in this (worker) thread, on its own event loop and database engine: the bot's loop
    only shares the interpreter with it, so it keeps answering. With `saved`, saved for the next start.
    `stop` set (the process is stopping) ends it between two chunks (services.lookup.BuildStopped)."""
    from bot.db import make_engine, make_sessionmaker

    async def build() -> LookupIndex:
        engine = make_engine(url)
        try:
            async with make_sessionmaker(engine)() as session:
                return await build_index(session, workers=workers, chunk=BACKGROUND_CHUNK, collect=False,
                                         to_save=saved is not None, stop=stop)
        finally:
            await engine.dispose()

    built = asyncio.run(build())
    if saved is not None and not (stop is not None and stop.is_set()):
        _save(built, saved)
    return built


async def _in_thread(url: str, workers: int | None, saved: SavedIndex | None) -> LookupIndex:
    """`_build_in_thread`, stopped when the task awaiting it is cancelled (the process stopping): a thread
    cannot be cancelled, and the interpreter waits for it at exit — a Ctrl+C during the first start at 1M
    customers waited for the whole build, over a minute. It stops within a chunk now."""
    stop = threading.Event()
    try:
        return await asyncio.to_thread(_build_in_thread, url, workers, saved, stop)
    except asyncio.CancelledError:
        stop.set()
        raise


async def complete_index(index: LookupIndex, sessions: async_sessionmaker[AsyncSession], *,
                         workers: int | None = None, retry_after: float = 30.0,
                         saved: SavedIndex | None = None) -> None:
    """Build the whole lookup index beside the running bot and swap it into the loading `index`
    (services.lookup rule 6); with `saved`, also saved for the next start (rule 7). A failed build (a
    database hiccup) is logged and tried again."""
    engine = sessions.kw["bind"]
    url = engine.url
    only_here = in_memory(engine)
    while True:
        started = asyncio.get_running_loop().time()
        try:
            if only_here:  # a database only this engine sees (tests): build on this loop
                async with sessions() as session:
                    built = await build_index(session, workers=workers, collect=False)
            else:
                built = await _in_thread(url.render_as_string(hide_password=False), workers, saved)
            async with sessions() as session:
                changed = await finish_loading(index, built, session)
            break
        except Exception:
            log.exception("building the lookup index failed; exact names still work; trying again in %.0f s",
                          retry_after)
            await asyncio.sleep(retry_after)
    settle(collect=False)
    log.info("lookup index complete: %d customers in %.1f s (%d changed meanwhile, re-read)", len(index),
             asyncio.get_running_loop().time() - started, changed)


SAVE_ANEW_AFTER = 1_000  # customers read again on opening a saved index: more, and it is saved anew
WAIT_FOR_INDEX_BELOW = 20_000  # customers: the whole index builds in about a second, so the start waits for it


def saved_index(settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> SavedIndex | None:
    """Where this process's whole lookup index is kept between starts (services.lookup rule 7)."""
    return SavedIndex.under(settings.data_dir, sessions.kw["bind"].url)


async def _nothing() -> None:
    return None


async def _save_anew(sessions: async_sessionmaker[AsyncSession], saved: SavedIndex) -> None:
    """Build the whole index beside the running bot only to save it (the one in use is up to date): the
    next start then reads again only what changed after this one."""
    url = sessions.kw["bind"].url.render_as_string(hide_password=False)
    try:
        await _in_thread(url, None, saved)
    except Exception:
        log.exception("saving the lookup index anew failed; the next start reads the changes again")


async def open_index(sessions: async_sessionmaker[AsyncSession], *, wait_below: int = WAIT_FOR_INDEX_BELOW,
                     saved: SavedIndex | None = None) -> tuple[LookupIndex, asyncio.Task]:
    """The index the bot starts with: the one saved by an earlier start (`saved`: services.lookup rule 7),
    brought up to date, whole at once; otherwise exact names at once and the whole index built in the
    background (the task; cancel it on the way out) and saved. Under `wait_below` customers the build takes
    about a second and the start simply waits for it (nobody should read "still loading" for one second)."""
    if saved is not None:
        try:
            async with sessions() as session:
                index = await open_saved(session, saved.path, database=saved.database)
        except Exception:  # a database hiccup while reading the changes: built instead
            log.exception("the saved lookup index could not be brought up to date; building it")
            index = None
        if index is not None:
            settle(collect=False)
            # Many changes since it was saved (an import while stopped): saved anew in the background, so
            # that the next start does not read them all again.
            return index, asyncio.create_task(_save_anew(sessions, saved) if index.behind > SAVE_ANEW_AFTER
                                              else _nothing())
    async with sessions() as session:
        index = await start_index(session)
    # What start-up made lives as long as the process (the pinyin tables, the exact names): frozen now, the
    # collector's full passes while the bot answers stay short.
    settle(collect=False)
    building = asyncio.create_task(complete_index(index, sessions, saved=saved))
    if len(index) < wait_below:
        await building
    else:
        log.info("lookup: %d customers findable by exact name or phone now; building the whole index",
                 len(index))
    return index, building


async def keep_in_sync(index: LookupIndex, sessions: async_sessionmaker[AsyncSession],
                       every: float | None = None, redis_url: str | None = None) -> None:
    """Pick up customers other processes changed (a CLI import, another instance), forever: by a poll every
    SYNC_SECONDS and, with REDIS_URL, at once when another instance announces them (bot.index_feed)."""
    every = every or SYNC_SECONDS
    if redis_url:
        from bot import index_feed

        index_feed.configure(redis_url)
        listening = asyncio.create_task(index_feed.listen(index, sessions, redis_url))
        try:
            await keep_in_sync(index, sessions, every)
        finally:
            listening.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listening
            await index_feed.close()
    while True:
        await asyncio.sleep(every)
        if index.loading:  # the build under way reads them; its watermark is where sync goes on from
            continue
        try:
            async with sessions() as session:
                await sync(index, session)
        except Exception:  # a database hiccup must not stop the bot; try again next round
            log.exception("lookup index sync failed")


def jobs_runtime(sessions: async_sessionmaker[AsyncSession], settings: Settings, **extra):
    """What the scheduled jobs run with: the database, the bot's wording, the settings' currency and folder."""
    from bot.background import for_sessions
    from bot.presenter import LazyPresenter
    from jobs.reminders import Runtime

    extra.setdefault("background", for_sessions(sessions))  # the long jobs run beside the bot's loop
    return Runtime(sessions, files_dir=settings.data_dir / "reports", currency=settings.currency,
                   timezone=settings.default_timezone,
                   present=LazyPresenter(), **extra)


ROLES = ("all", "bot", "api", "worker")


def _stop_on_signals(stop: asyncio.Event) -> None:
    import signal

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        # Not available on Windows or outside the main thread (tests): stopping then relies on `stop`.
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)


def web_app(settings: Settings, sessions: async_sessionmaker[AsyncSession], *, index: LookupIndex | None,
            role: str, bot: Bot | None = None, dispatcher: Dispatcher | None = None, secret: str | None = None,
            scheduler=None):
    """This process's HTTP app (bot.web): the ERP API, /healthz, and the webhook when given."""
    from bot.web import create_web_app, webhook_path

    def jobs() -> dict:
        return {job.id: job.next_run_time.isoformat() if job.next_run_time else None
                for job in scheduler.get_jobs()} if scheduler is not None else {}

    return create_web_app(bot, dispatcher, sessions,
                          path=webhook_path(settings.webhook_url) if settings.webhook_url else None, secret=secret,
                          api_key=settings.api_key, index=index, timezone=settings.default_timezone, role=role,
                          jobs=jobs if scheduler is not None else None)


@contextlib.asynccontextmanager
async def serving_if_free(app, host: str, port: int):
    """Serve `app` beside the polling bot; a port already taken is a warning, not the end of the bot."""
    from bot.sandbox.server import serving

    context = serving(app, host, port)
    try:
        url = await context.__aenter__()
    except (OSError, SystemExit, RuntimeError) as exc:  # uvicorn exits when it cannot bind
        log.warning("the HTTP app (ERP API, /healthz) is not served: %s:%s is not free (%s)", host, port, exc)
        yield None
        return
    log.info("HTTP app (ERP API at /api/v1, docs at /api/docs, /healthz) on %s", url)
    try:
        yield url
    finally:
        await context.__aexit__(None, None, None)


def _scheduler_for(bot: Bot, sessions: async_sessionmaker[AsyncSession], settings: Settings, runtime=None, *,
                   drain: bool = True):
    from bot.retry import limiter_for
    from bot.sender import Sender
    from jobs.scheduler import create_scheduler

    if runtime is None:
        runtime = jobs_runtime(sessions, settings)
    runtime.files_dir, runtime.currency = settings.data_dir / "reports", settings.currency
    runtime.sender = runtime.sender or Sender(bot, sessions, now=runtime.now, limiter=limiter_for(bot))
    from bot.metrics import job_listener

    scheduler = create_scheduler(runtime, drain=drain)
    job_listener(scheduler)
    return scheduler


async def run_polling(bot: Bot, dispatcher: Dispatcher, sessions: async_sessionmaker[AsyncSession],
                      settings: Settings, index: LookupIndex, runtime=None, *, schedule: bool = True,
                      http: bool = False, role: str = "all") -> None:
    """Long polling; with `schedule`, this process also runs the scheduler (role all); with `http`, it serves
    the HTTP app (ERP API, /healthz) on HTTP_HOST:HTTP_PORT when that port is free."""
    await wait_for_telegram(bot)
    menus = asyncio.create_task(keep_menus(bot, sessions, settings) if await set_commands(bot, sessions, settings)
                                else asyncio.sleep(0))
    syncing = asyncio.create_task(keep_in_sync(index, sessions, redis_url=settings.redis_url))
    scheduling = _Scheduling(bot, sessions, settings, runtime) if schedule else None
    try:
        if http:
            app = web_app(settings, sessions, index=index, role=role, scheduler=scheduling and scheduling.view)
            async with serving_if_free(app, settings.http_host, settings.http_port):
                await dispatcher.start_polling(bot, handle_signals=True)
        else:
            await dispatcher.start_polling(bot, handle_signals=True)
    finally:
        if scheduling is not None:
            await scheduling.stop()
        for task in (syncing, menus):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def run_webhook(bot: Bot, dispatcher: Dispatcher, sessions: async_sessionmaker[AsyncSession],
                      settings: Settings, index: LookupIndex, *, stop: asyncio.Event | None = None,
                      schedule: bool = True, role: str = "all") -> None:
    """Webhook mode: serve the HTTP app on HTTP_HOST:HTTP_PORT, tell Telegram where to POST (with the secret
    token), run the scheduler (role all); until Ctrl+C / SIGTERM (or `stop`)."""
    import secrets

    from bot.sandbox.server import serving

    secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else secrets.token_urlsafe(32)
    stop = stop or asyncio.Event()
    _stop_on_signals(stop)
    await wait_for_telegram(bot)
    menus = asyncio.create_task(keep_menus(bot, sessions, settings) if await set_commands(bot, sessions, settings)
                                else asyncio.sleep(0))
    scheduling = None
    view = _Leading({"scheduler": None}) if schedule else None
    app = web_app(settings, sessions, index=index, role=role, bot=bot, dispatcher=dispatcher, secret=secret,
                  scheduler=view)
    syncing = asyncio.create_task(keep_in_sync(index, sessions, redis_url=settings.redis_url))
    async with serving(app, settings.http_host, settings.http_port):
        await bot.set_webhook(settings.webhook_url, secret_token=secret,
                              allowed_updates=dispatcher.resolve_used_update_types())
        if schedule:
            scheduling = _Scheduling(bot, sessions, settings, view=view)
        log.info("webhook mode: Telegram posts to %s", settings.webhook_url)
        try:
            await stop.wait()
        finally:
            if scheduling is not None:
                await scheduling.stop()
            for task in (syncing, menus):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task


async def run_api(settings: Settings, sessions: async_sessionmaker[AsyncSession], *,
                  stop: asyncio.Event | None = None) -> None:
    """Role api: the HTTP app only (ERP API, /healthz), with its own lookup index for customer search."""
    from bot.sandbox.server import serving

    stop = stop or asyncio.Event()
    _stop_on_signals(stop)
    index, building = await open_index(sessions, saved=saved_index(settings, sessions))
    syncing = asyncio.create_task(keep_in_sync(index, sessions, redis_url=settings.redis_url))
    try:
        async with serving(web_app(settings, sessions, index=index, role="api"), settings.http_host,
                           settings.http_port) as url:
            log.info("role api: ERP API at %s/api/v1, docs at %s/api/docs", url, url)
            await stop.wait()
    finally:
        for task in (syncing, building):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


class _Scheduling:
    """Role all's scheduler, run only while this process leads (jobs.leader), as a worker's is: two
    `run` processes on one database (or `run` beside a `run --role worker`) never both schedule."""

    def __init__(self, bot: Bot, sessions: async_sessionmaker[AsyncSession], settings: Settings, runtime=None, *,
                 view: _Leading | None = None) -> None:
        from jobs.scheduler import run_as_leader

        self.view = view or _Leading({"scheduler": None})
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(run_as_leader(
            lambda: _scheduler_for(bot, sessions, settings, runtime), sessions.kw["bind"], self._stop,
            on_change=lambda scheduler: self.view.current.update(scheduler=scheduler)))

    async def stop(self) -> None:
        self._stop.set()
        await self._task


class _Leading:
    """/healthz's view of a worker's scheduler: its jobs while this worker leads, none while it waits."""

    def __init__(self, current: dict) -> None:
        self.current = current

    def get_jobs(self) -> list:
        scheduler = self.current["scheduler"]
        return scheduler.get_jobs() if scheduler is not None else []


async def run_worker(settings: Settings, sessions: async_sessionmaker[AsyncSession], *,
                     stop: asyncio.Event | None = None) -> None:
    """Role worker: the scheduler (reminder scans, digests, reports, RFM, the outbox sender) while this
    process leads (jobs.leader: a PostgreSQL advisory lock, or a file lock beside the SQLite file) — a
    second worker waits and takes over when the first dies; /healthz on HTTP_PORT when it is free."""
    from bot.app import create_bot
    from bot.sender import Sender
    from bot.shared_limits import close, install
    from jobs.scheduler import keep_draining, run_as_leader

    stop = stop or asyncio.Event()
    _stop_on_signals(stop)
    bot = create_bot(settings)
    limiter = install(bot, settings.redis_url)  # Telegram's limits shared through Redis when REDIS_URL is set
    runtime = jobs_runtime(sessions, settings)
    runtime.sender = Sender(bot, sessions, now=runtime.now, limiter=limiter)
    current: dict = {"scheduler": None}
    draining = None
    try:
        await wait_for_telegram(bot)
        draining = asyncio.create_task(keep_draining(runtime, stop))  # every worker sends the outbox
        log.info("role worker: waiting to lead the scheduler (one worker runs it at a time)")
        app = web_app(settings, sessions, index=None, role="worker", scheduler=_Leading(current))
        async with serving_if_free(app, settings.http_host, settings.http_port):
            await run_as_leader(lambda: _scheduler_for(bot, sessions, settings, runtime, drain=False),
                                sessions.kw["bind"], stop,
                                on_change=lambda scheduler: current.update(scheduler=scheduler))
    finally:
        stop.set()
        if draining is not None:
            await draining  # finishes the sends in flight and gives back the rows it claimed
        await close(bot)
        await bot.session.close()
        await close_all(stop_worker=True)


async def hold_reports_when_ready(building: asyncio.Future, sessions: async_sessionmaker[AsyncSession],
                                  index: LookupIndex) -> None:
    """Once the lookup index is complete (the start's own work done), the worker process that builds the
    reports holds the day's stored ones again (services.reports.hold_stored), one report per piece of work
    so that a /report or a job asked for meanwhile waits for one at most: the first /report after a
    restart is as fast as the next. No worker is started when nothing is stored. Nothing depends on it: a
    failure is logged. An `index` already whole (opened from the saved one) is complete: `building` is then
    at most its saving anew, which nobody waits for (at 1M customers it held the reports back ~100 s)."""
    from functools import partial

    from bot.background import for_sessions
    from services.reports import HELD, NO_ROOM, hold_one_work, to_hold

    if index.loading:
        await asyncio.wait([building])
    held = 0
    try:
        async with sessions() as session:
            stored = await to_hold(session)
        for key, version, made_at in stored:
            done = await for_sessions(sessions).run(partial(hold_one_work, key, version, made_at))
            if done == NO_ROOM:
                break
            held += done == HELD
    except Exception:
        log.warning("the prepared reports could not be held in memory after the start", exc_info=True)
    if held:
        log.info("%d prepared report(s) held in memory for the first requests", held)


async def start(settings: Settings, sessions: async_sessionmaker[AsyncSession], role: str = "all") -> None:
    """Run this process's role: all (bot, scheduler and HTTP app in one process — the default), bot (chat
    and HTTP app; several may run), api (HTTP app only), worker (scheduler and outbox sender)."""
    from bot.app import close_dispatcher, create_bot, create_dispatcher

    if role == "worker":
        await run_worker(settings, sessions)
        return
    if role == "api":
        await run_api(settings, sessions)
        return
    from bot.shared_limits import close, install

    index, building = await open_index(sessions, saved=saved_index(settings, sessions))
    bot = create_bot(settings)
    install(bot, settings.redis_url)  # the outbox (role all) and direct replies count in the shared limits
    dispatcher = create_dispatcher(settings, sessions, index)
    schedule = role == "all"
    holding = asyncio.create_task(hold_reports_when_ready(building, sessions, index))
    try:
        if settings.webhook_url:
            await run_webhook(bot, dispatcher, sessions, settings, index, schedule=schedule, role=role)
        else:
            await run_polling(bot, dispatcher, sessions, settings, index, schedule=schedule, http=True, role=role)
    finally:
        await close_dispatcher(dispatcher)
        for task in (holding, building):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await close(bot)
        await bot.session.close()
        await close_all(stop_worker=True)
