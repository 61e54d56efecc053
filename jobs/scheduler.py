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

from datetime import timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from jobs import reminders as jobs
from models import utcnow

RUNTIMES: dict[str, jobs.Runtime] = {}

SCAN_SECONDS = 15 * 60
DIGEST_SECONDS = 5 * 60
DRAIN_SECONDS = 2


async def run_scan(runtime_id: str) -> None:
    await jobs.scan(RUNTIMES[runtime_id])


async def run_digests(runtime_id: str) -> None:
    await jobs.plan_digests(RUNTIMES[runtime_id])


async def run_drain(runtime_id: str) -> None:
    await jobs.drain(RUNTIMES[runtime_id])


def create_scheduler(runtime: jobs.Runtime, runtime_id: str = "main", *, scan_seconds: int = SCAN_SECONDS,
                     digest_seconds: int = DIGEST_SECONDS, drain_seconds: int = DRAIN_SECONDS) -> AsyncIOScheduler:
    RUNTIMES[runtime_id] = runtime
    scheduler = AsyncIOScheduler(timezone="UTC", job_defaults={"coalesce": True, "max_instances": 1})
    start = utcnow()
    for job_id, func, every, delay in (("reminders.scan", run_scan, scan_seconds, 0),
                                       ("digests.plan", run_digests, digest_seconds, 5),
                                       ("outbox.drain", run_drain, drain_seconds, 1)):
        scheduler.add_job(func, IntervalTrigger(seconds=every), args=[runtime_id], id=job_id,
                          misfire_grace_time=every, next_run_time=start + timedelta(seconds=delay),
                          replace_existing=True)
    return scheduler
