"""Prometheus metrics (the official prometheus-client), served at GET /metrics by every process's HTTP app.

- fieldcrm_updates_total{handler, outcome}: updates by the handler that took them (module.function, or
  "none") and how they ended: handled, refused (a rule said no), error (unexpected), unhandled.
- fieldcrm_handler_seconds{handler}: handler latency (transaction included).
- fieldcrm_telegram_requests_total{method, outcome}: every Bot API call: ok, flood (429), failed.
- fieldcrm_outbox_pending, fieldcrm_outbox_oldest_pending_seconds: the queue, read at scrape time.
- fieldcrm_job_runs_total{job, outcome}, fieldcrm_job_seconds{job}: scheduled job runs and durations.
- fieldcrm_api_requests_total{route, method, status}: HTTP API requests by route template and status.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware, Bot
from aiogram.client.session.middlewares.base import BaseRequestMiddleware, NextRequestMiddlewareType
from aiogram.dispatcher.event.bases import UNHANDLED
from aiogram.exceptions import TelegramRetryAfter
from aiogram.methods import Response, TelegramMethod
from aiogram.methods.base import TelegramType
from aiogram.types import TelegramObject
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

REGISTRY = CollectorRegistry()
LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
UPDATES = Counter("fieldcrm_updates", "Updates by handler and outcome", ["handler", "outcome"], registry=REGISTRY)
HANDLER_SECONDS = Histogram("fieldcrm_handler_seconds", "Handler latency, transaction included", ["handler"],
                            buckets=LATENCY, registry=REGISTRY)
TELEGRAM = Counter("fieldcrm_telegram_requests", "Bot API calls by method and outcome (ok, flood, failed)",
                   ["method", "outcome"], registry=REGISTRY)
OUTBOX_PENDING = Gauge("fieldcrm_outbox_pending", "Messages waiting in the outbox", registry=REGISTRY)
OUTBOX_OLDEST = Gauge("fieldcrm_outbox_oldest_pending_seconds", "Age of the oldest message waiting in the outbox "
                      "whose time has come", registry=REGISTRY)
JOBS = Counter("fieldcrm_job_runs", "Scheduled job runs by job and outcome", ["job", "outcome"], registry=REGISTRY)
JOB_SECONDS = Histogram("fieldcrm_job_seconds", "Scheduled job durations", ["job"],
                        buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600), registry=REGISTRY)
API = Counter("fieldcrm_api_requests", "HTTP API requests by route, method and status", ["route", "method", "status"],
              registry=REGISTRY)


def _name(callback: Any) -> str:
    return f"{getattr(callback, '__module__', '?')}.{getattr(callback, '__name__', '?')}"


class HandlerMetrics(BaseMiddleware):
    """Inner middleware: which handler took the update, how it ended and how long it took."""

    async def __call__(self, handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
                       event: TelegramObject, data: dict[str, Any]) -> Any:
        from bot.logs import HANDLER
        from services.messages import DomainError

        found = data.get("handler")
        name = _name(found.callback) if found is not None else "none"
        HANDLER.set(name)
        started, outcome = time.perf_counter(), "error"
        try:
            result = await handler(event, data)
            outcome = "unhandled" if result is UNHANDLED else "handled"
            return result
        except DomainError:
            outcome = "refused"
            raise
        finally:
            UPDATES.labels(name, outcome).inc()
            HANDLER_SECONDS.labels(name).observe(time.perf_counter() - started)


class UnhandledMetrics(BaseMiddleware):
    """Outer (update) middleware: an update no handler took is counted as handler "none"."""

    async def __call__(self, handler, event, data) -> Any:
        result = await handler(event, data)
        if result is UNHANDLED:
            UPDATES.labels("none", "unhandled").inc()
        return result


class TelegramMetrics(BaseRequestMiddleware):
    """Innermost request middleware: every attempt at a Bot API call, with its outcome."""

    async def __call__(self, make_request: NextRequestMiddlewareType[TelegramType], bot: Bot,
                       method: TelegramMethod[TelegramType]) -> Response[TelegramType]:
        name = type(method).__name__
        try:
            response = await make_request(bot, method)
        except TelegramRetryAfter:
            TELEGRAM.labels(name, "flood").inc()
            raise
        except Exception:
            TELEGRAM.labels(name, "failed").inc()
            raise
        TELEGRAM.labels(name, "ok").inc()
        return response


def job_listener(scheduler) -> None:
    """Count the scheduler's job runs and durations (APScheduler events: no change to the jobs)."""
    from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, EVENT_JOB_MISSED

    def on_event(event) -> None:
        outcome = "missed" if event.code == EVENT_JOB_MISSED else "error" if event.exception else "ok"
        JOBS.labels(event.job_id, outcome).inc()
        if event.code != EVENT_JOB_MISSED and event.scheduled_run_time is not None:
            from datetime import UTC, datetime

            JOB_SECONDS.labels(event.job_id).observe(
                max(0.0, (datetime.now(UTC) - event.scheduled_run_time).total_seconds()))

    scheduler.add_listener(on_event, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR | EVENT_JOB_MISSED)


async def render(sessions) -> tuple[bytes, str]:
    """The metrics text, with the outbox gauges read from the database now."""
    from sqlalchemy import func, select

    from models import OutboxMessage, OutboxStatus, as_utc, utcnow

    async with sessions() as session:
        pending = await session.scalar(select(func.count()).select_from(OutboxMessage).where(
            OutboxMessage.status == OutboxStatus.pending))
        now = utcnow()
        oldest = await session.scalar(select(func.min(OutboxMessage.next_attempt_at)).where(
            OutboxMessage.status == OutboxStatus.pending, OutboxMessage.next_attempt_at <= now))
    OUTBOX_PENDING.set(pending or 0)
    OUTBOX_OLDEST.set(max(0.0, (now - as_utc(oldest)).total_seconds()) if oldest else 0.0)
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
