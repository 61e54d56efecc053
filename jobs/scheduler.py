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
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from jobs import reminders as jobs

RUNTIMES: dict[str, jobs.Runtime] = {}

SCAN_SECONDS = 15 * 60
DIGEST_SECONDS = 5 * 60
DRAIN_SECONDS = 2


RUNNING: set[asyncio.Task] = set()


def _tracked(job):
    async def run(runtime_id: str) -> None:
        task = asyncio.current_task()
        RUNNING.add(task)
        try:
            await job(RUNTIMES[runtime_id])
        except asyncio.CancelledError:  # stopped at shutdown after its grace time: not an error to log
            pass
        finally:
            RUNNING.discard(task)
    run.__name__ = run.__qualname__ = f"run_{job.__name__}"
    return run


run_scan, run_digests, run_drain = _tracked(jobs.scan), _tracked(jobs.plan_digests), _tracked(jobs.drain)
run_rfm, run_reports = _tracked(jobs.score_rfm), _tracked(jobs.plan_manager_reports)
run_forget = _tracked(jobs.forget_handled_updates)
RFM_SECONDS = 24 * 3600


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
                     digest_seconds: int = DIGEST_SECONDS, drain_seconds: int = DRAIN_SECONDS) -> AsyncIOScheduler:
    RUNTIMES[runtime_id] = runtime
    scheduler = AsyncIOScheduler(timezone="UTC", job_defaults={"coalesce": True, "max_instances": 1})
    start = datetime.now(UTC)  # APScheduler keeps real time, whatever the sandbox did to the product's clock
    for job_id, func, every, delay in (("reminders.scan", run_scan, scan_seconds, 0),
                                       ("digests.plan", run_digests, digest_seconds, 5),
                                       ("outbox.drain", run_drain, drain_seconds, 1),
                                       ("rfm.score", run_rfm, 3600, 30),  # does the work once a day
                                       ("updates.forget", run_forget, RFM_SECONDS, 60),
                                       ("reports.weekly", run_reports, digest_seconds, 10)):
        scheduler.add_job(func, IntervalTrigger(seconds=every), args=[runtime_id], id=job_id,
                          misfire_grace_time=every, next_run_time=start + timedelta(seconds=delay),
                          replace_existing=True)
    return scheduler
