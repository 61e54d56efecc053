"""The scheduler: APScheduler 3.11 `AsyncIOScheduler` running the jobs of jobs.reminders.

Choices, on purpose:
- Jobs take no objects, only what they can look up (the runtime is registered once, by id), so they
  could move to a persistent job store unchanged.
- `coalesce=True`: runs that piled up while the process was down or busy collapse into one; every job
  computes from the data and writes keyed rows, so one late run catches up completely.
- `misfire_grace_time` = the job's own interval: a run late by less than one interval still happens; a
  later one is dropped, because the next regular run does the same work.
- `max_instances=1`: a slow scan never overlaps itself.
- Every job also runs once right at start, so a restart catches up at once, not at the next tick.
- Several worker processes (issue 16): the scheduler runs in one of them at a time — `run_as_leader` waits
  for the leadership (jobs.leader: a PostgreSQL advisory lock, or a file lock beside the SQLite file),
  starts the scheduler, checks the lock every few seconds, and stops the scheduler if the lock is lost; the
  others wait and take over when the leader dies. The outbox may be drained by every process
  (`keep_draining`, with `create_scheduler(..., drain=False)` for the leader): the senders share the outbox
  (services.outbox.claim) and, with Redis, Telegram's limits (bot.shared_limits).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

from jobs import reminders as jobs
from jobs.leader import Leadership

log = logging.getLogger("fieldcrm.jobs")

RUNTIMES: dict[str, jobs.Runtime] = {}

SCAN_SECONDS = 15 * 60
DIGEST_SECONDS = 5 * 60
DRAIN_SECONDS = 2


RUNNING: set[asyncio.Task] = set()


def _tracked(job, *, long: bool = True):
    """The job as the scheduler calls it: tracked for `stop`; a long one runs in the runtime's background
    thread (jobs.reminders.apart), the outbox drain on this loop (it uses the bot)."""
    async def run(runtime_id: str) -> None:
        task = asyncio.current_task()
        RUNNING.add(task)
        try:
            if long:
                await jobs.apart(RUNTIMES[runtime_id], job)
            else:
                await job(RUNTIMES[runtime_id])
        except asyncio.CancelledError:  # stopped at shutdown after its grace time: not an error to log
            pass
        finally:
            RUNNING.discard(task)
    run.__name__ = run.__qualname__ = f"run_{job.__name__}"
    return run


run_scan, run_digests = _tracked(jobs.scan), _tracked(jobs.plan_digests)
run_drain = _tracked(jobs.drain, long=False)
run_rfm, run_reports = _tracked(jobs.score_rfm), _tracked(jobs.plan_manager_reports)
run_forget = _tracked(jobs.forget_handled_updates)
run_prepare = _tracked(jobs.prepare_reports)
RFM_SECONDS = 24 * 3600


class _DrainStillRunning(logging.Filter):
    """APScheduler warns each time a run is skipped because the last one still runs. For the outbox drain
    that is the normal case (one drain keeps sending up to 50 s while the job ticks every 2 s), so those
    warnings are dropped; every other job's are kept (a scan longer than its interval is news)."""

    def filter(self, record: logging.LogRecord) -> bool:
        job = record.args[0] if isinstance(record.args, tuple) and record.args else None
        return not (getattr(job, "id", None) == "outbox.drain" and "maximum number of running" in record.msg)


_QUIET_DRAIN = _DrainStillRunning()


async def stop(scheduler: AsyncIOScheduler, grace: float = 30) -> None:
    """Stop scheduling and let the jobs that are running finish (cancelled after `grace` seconds), so no
    job is cut off halfway through a transaction or a send."""
    scheduler.shutdown(wait=False)
    running = [t for t in RUNNING if not t.done()]
    if running:
        _, late = await asyncio.wait(running, timeout=grace)
        for task in late:
            task.cancel()
        if late:
            await asyncio.wait(late, timeout=5)


def create_scheduler(runtime: jobs.Runtime, runtime_id: str = "main", *, scan_seconds: int = SCAN_SECONDS,
                     digest_seconds: int = DIGEST_SECONDS, drain_seconds: int = DRAIN_SECONDS,
                     drain: bool = True) -> AsyncIOScheduler:
    """The jobs on their intervals; `drain=False` leaves the outbox to `keep_draining` (every process)."""
    RUNTIMES[runtime_id] = runtime
    scheduler = AsyncIOScheduler(timezone="UTC", job_defaults={"coalesce": True, "max_instances": 1})
    scheduler._logger.addFilter(_QUIET_DRAIN)  # adding the same filter again is a no-op
    start = datetime.now(UTC)  # APScheduler keeps real time, whatever the sandbox did to the product's clock
    for job_id, func, every, delay in (("reminders.scan", run_scan, scan_seconds, 0),
                                       ("digests.plan", run_digests, digest_seconds, 5),
                                       ("outbox.drain", run_drain, drain_seconds, 1),
                                       ("rfm.score", run_rfm, 3600, 30),  # does the work once a day
                                       ("reports.prepare", run_prepare, 3600, 120),  # once a day per leader
                                       ("updates.forget", run_forget, RFM_SECONDS, 60),
                                       ("reports.weekly", run_reports, digest_seconds, 10)):
        if job_id == "outbox.drain" and not drain:
            continue
        scheduler.add_job(func, IntervalTrigger(seconds=every), args=[runtime_id], id=job_id,
                          misfire_grace_time=every, next_run_time=start + timedelta(seconds=delay),
                          replace_existing=True)
    return scheduler


async def run_as_leader(create: Callable[[], AsyncIOScheduler], engine: AsyncEngine | URL | str,
                        stop_event: asyncio.Event, *, leadership: Leadership | None = None, grace: float = 30,
                        on_change: Callable[[AsyncIOScheduler | None], None] | None = None) -> None:
    """Run the scheduler in this process only while it leads (jobs.leader), until `stop_event` is set.

    Waits for the leadership (trying every `leadership.retry_every` seconds), then `create()`s and starts a
    scheduler and checks the lock every `leadership.check_every` seconds. Leadership lost (the lock's
    connection failed): the scheduler is stopped (running jobs get `grace` seconds) and this process waits
    again. On `stop_event` (or cancellation) the scheduler is stopped and the lock released, so another
    process takes over at once. `on_change` is told the running scheduler, or None when there is none (e.g.
    for /healthz). A new scheduler is made each time this process takes over."""
    leadership = leadership or Leadership(engine)
    try:
        while not stop_event.is_set():
            if not await leadership.acquire(stop=stop_event):
                break
            scheduler = create()
            scheduler.start()
            if on_change:
                on_change(scheduler)
            try:
                while not stop_event.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop_event.wait(), leadership.check_every)
                    if not stop_event.is_set() and not await leadership.held():
                        break  # `held` logged why
            finally:
                if on_change:
                    on_change(None)
                await stop(scheduler, grace)
            if not stop_event.is_set():
                log.warning("the scheduler stopped here: leadership lost; waiting to take it over again")
                await leadership.release()
    finally:
        await leadership.release()


async def keep_draining(runtime: jobs.Runtime, stop_event: asyncio.Event, *, every: float = DRAIN_SECONDS) -> None:
    """Drain the outbox every `every` seconds in this process, whoever runs the scheduler, until `stop_event`:
    one sender per process (create the leader's scheduler with drain=False). A drain in progress when
    `stop_event` is set is cancelled: it finishes the messages in flight and gives back what it claimed."""
    while not stop_event.is_set():
        draining = asyncio.ensure_future(jobs.drain(runtime))
        stopping = asyncio.ensure_future(stop_event.wait())
        try:
            await asyncio.wait({draining, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            if not draining.done():
                draining.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await draining
        if not draining.cancelled() and draining.exception() is not None:
            log.error("draining the outbox failed", exc_info=draining.exception())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop_event.wait(), every)
