"""The ERP sync API (FastAPI), under /api/v1, documented at /api/docs (OpenAPI at /api/openapi.json).

- Auth: `Authorization: Bearer <token>` (services.tokens; made with `python main.py token create NAME`).
  No or a bad token: 401. A read token writing: 403.
- Writes (customers, contacts, purchases; one record or a batch of up to 5,000) go through
  services.importer.import_records: the file importer's validation, value parsing and idempotent upsert by
  客户编号 / 订单号 / name. A batch with any bad record changes nothing and gets 422 with one entry per
  record and field. Audited with the token's name. `?dry_run=true` checks without writing.
- Reads see what the token sees (a token tied to a person: that person's customers).
- Messages are English, or Chinese with `Accept-Language: zh` / `zh-TW`.
It never imports handlers/ (the chat front end).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

from fastapi import APIRouter, Body, Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot import index_feed
from bot.i18n import gettext_for, pick_language
from models import ApiToken, User
from services.access import Viewer, viewer_for
from services.lookup import LookupIndex, sync
from services.messages import DomainError

log = logging.getLogger("fieldcrm.api")
KINDS = ("customers", "contacts", "purchases")
bearer = HTTPBearer(auto_error=False, description="An API token: `python main.py token create NAME --scope write`")


class Records(BaseModel):
    records: list[dict[str, Any]] = Field(..., max_length=5000, description="Up to 5,000 records, keyed by the "
                                          "English field names (or the Chinese column headers) of the import")


class RowProblem(BaseModel):
    row: int = Field(description="The record's number in the batch, from 1 (0: the request as a whole)")
    field: str
    value: str
    problem: str


class Refused(BaseModel):
    error_count: int
    errors: list[RowProblem]


class Applied(BaseModel):
    applied: bool = Field(description="False for a dry run")
    rows: int
    created: int
    updated: int
    unchanged: int


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def _language(request: Request) -> Callable[[str], str]:
    header = request.headers.get("accept-language", "")
    first = header.split(",")[0].split(";")[0].strip()
    return gettext_for(pick_language(first, "en") if first else "en")


DEADLOCK_TRIES = 3
RETRYABLE = {"40P01", "40001"}  # deadlock detected, serialization failure


def _sqlstate(exc: DBAPIError) -> str | None:
    orig = exc.orig
    return getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)


def create_api(sessions: async_sessionmaker[AsyncSession], secret: Callable[[], bytes], *,
               index: LookupIndex | None = None, timezone: str = "Asia/Shanghai") -> APIRouter:
    """The /api/v1 routes. `index`: the process's lookup index (the bot's, when both run in one process);
    without one, the customer search endpoint answers 503."""
    from services.erp import customer_by_code, customer_by_code_json, due_json, lookup_json, purchases_json
    from services.importer import FileProblem, import_records
    from services.tokens import check_token

    router = APIRouter(prefix="/api/v1")

    async def session_dependency():
        async with sessions() as session:
            yield session

    async def caller(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer),
                     session: AsyncSession = Depends(session_dependency)) -> tuple[ApiToken, Viewer]:
        _ = _language(request)
        token = await check_token(session, secret(), credentials.credentials if credentials else None)
        if token is None:
            raise ApiError(401, _("A valid API token is needed: Authorization: Bearer <token>."))
        viewer = Viewer.everyone()
        if token.user_id is not None:
            user = await session.get(User, token.user_id)
            if user is None or not user.active:
                raise ApiError(401, _("This token's person is disabled."))
            viewer = await viewer_for(session, user)
        await session.commit()  # last_used_at
        return token, viewer

    def writer(request: Request, who: tuple[ApiToken, Viewer] = Depends(caller)) -> tuple[ApiToken, Viewer]:
        _ = _language(request)
        if who[0].scope != "write":
            raise ApiError(403, _("This token may only read (its scope is read)."))
        return who

    async def write(request: Request, kind: str, records: list[dict[str, Any]], token: ApiToken, dry_run: bool,
                    session: AsyncSession) -> JSONResponse:
        _ = _language(request)
        who = token.name  # read now: a rolled-back attempt expires what the session loaded
        try:
            for attempt in range(1, DEADLOCK_TRIES + 1):
                try:
                    async with session.begin():
                        report = await import_records(session, kind, records, source={"token": who},
                                                      timezone=timezone, dry_run=dry_run)
                        if not report.ok:
                            raise _Invalid(report)
                    break
                except DBAPIError as exc:
                    # Two jobs writing the same records at once: PostgreSQL aborted this one to let the other
                    # go on (services.sql.lock_in_order keeps this rare). Nothing was written: do it again.
                    if attempt == DEADLOCK_TRIES or _sqlstate(exc) not in RETRYABLE:
                        raise
                    log.info("API %s write aborted by the database (%s): trying again", kind, _sqlstate(exc))
                    await asyncio.sleep(0.05 * attempt)
        except _Invalid as invalid:
            report = invalid.report
            errors = [RowProblem(row=e.row, field=e.column, value=e.value, problem=e.problem.render(_))
                      for e in report.errors]
            return JSONResponse(Refused(error_count=report.error_count, errors=errors).model_dump(), status_code=422)
        except (FileProblem, DomainError) as refused:
            problem = RowProblem(row=0, field="", value="", problem=refused.problem.render(_))
            return JSONResponse(Refused(error_count=1, errors=[problem]).model_dump(), status_code=422)
        if index is not None and report.applied and kind != "purchases":
            reloaded: set[int] = set()
            try:  # findable at once here, and at once on the other instances too (told through Redis)
                async with sessions() as fresh:
                    await sync(index, fresh, reloaded)
            except Exception:  # the index catches up by its sync
                log.exception("lookup index refresh after an API write failed")
            await index_feed.publish(reloaded)
        return JSONResponse(Applied(applied=report.applied, rows=report.rows, created=report.created,
                                    updated=report.updated, unchanged=report.unchanged).model_dump())

    responses = {401: {"description": "No or a bad token"}, 403: {"description": "A read-only token"},
                 422: {"model": Refused, "description": "Refused: one entry per record and field; nothing changed"}}

    for kind in KINDS:
        def endpoints(kind: str = kind) -> None:
            @router.post(f"/{kind}", response_model=Applied, responses=responses, name=f"upsert one of {kind}",
                         summary=f"Create or update one record of {kind}")
            async def one(request: Request, record: dict[str, Any] = Body(..., examples=[_EXAMPLES[kind]]),
                          dry_run: bool = False, who=Depends(writer),
                          session: AsyncSession = Depends(session_dependency)) -> JSONResponse:
                return await write(request, kind, [record], who[0], dry_run, session)

            @router.post(f"/{kind}/batch", response_model=Applied, responses=responses, name=f"upsert {kind}",
                         summary=f"Create or update up to 5,000 records of {kind}, all or nothing")
            async def batch(request: Request, body: Records, dry_run: bool = False, who=Depends(writer),
                            session: AsyncSession = Depends(session_dependency)) -> JSONResponse:
                return await write(request, kind, body.records, who[0], dry_run, session)

        endpoints()

    @router.get("/customers/{external_id}", responses={404: {"description": "No such customer the token sees"}},
                summary="A customer by its ERP code (客户编号)")
    async def customer(request: Request, external_id: str, who=Depends(caller),
                       session: AsyncSession = Depends(session_dependency)) -> dict[str, Any]:
        _ = _language(request)
        found = await customer_by_code_json(session, who[1], external_id)
        if found is None:
            raise ApiError(404, _("No customer has that code."))
        return found

    @router.get("/customers/{external_id}/purchases", summary="A customer's purchases, newest first")
    async def purchases(request: Request, external_id: str, since: date | None = None,
                        limit: int = Query(100, ge=1, le=500), who=Depends(caller),
                        session: AsyncSession = Depends(session_dependency)) -> list[dict[str, Any]]:
        _ = _language(request)
        found = await customer_by_code(session, who[1], external_id)
        if found is None:
            raise ApiError(404, _("No customer has that code."))
        return await purchases_json(session, found, since=since, limit=limit)

    @router.get("/customers", summary="Find customers as reps do: name, pinyin, initials, contact, phone digits")
    async def search(request: Request, q: str = Query(..., min_length=1, max_length=100),
                     limit: int = Query(10, ge=1, le=50), who=Depends(caller),
                     session: AsyncSession = Depends(session_dependency)) -> list[dict[str, Any]]:
        _ = _language(request)
        if index is None:
            raise ApiError(503, _("The customer search runs where the bot runs (role bot or all)."))
        return await lookup_json(session, who[1], index, q, limit)

    @router.get("/reminders/due", summary="What the reminder scan would create or keep now (nothing is sent)")
    async def due(request: Request, user_id: int | None = Query(None, ge=1, le=2**31 - 1), who=Depends(caller),
                  session: AsyncSession = Depends(session_dependency)) -> list[dict[str, Any]]:
        _ = _language(request)
        viewer = who[1]
        if viewer.owners is not None:  # a token tied to a person sees their reminders, or their team's
            if user_id is None and len(viewer.owners) == 1:
                user_id = next(iter(viewer.owners))
            if user_id is None or user_id not in viewer.owners:
                raise ApiError(403, _("This token sees only its person's (or team's) reminders: give ?user_id=."))
        return await due_json(session, datetime.now(UTC), user_id)

    return router


class _Invalid(Exception):
    """Leaves the transaction (rolled back) with the import's report of what is wrong."""

    def __init__(self, report) -> None:
        super().__init__("invalid records")
        self.report = report


_EXAMPLES: dict[str, dict[str, Any]] = {
    "customers": {"external_id": "C-1001", "name": "广州市人易软件技术有限公司", "short_name": "人易软件",
                  "phone": "020-8888 1234", "region": "华南", "owner": "李明"},
    "contacts": {"customer_external_id": "C-1001", "name": "王芳", "title": "采购经理", "mobile": "13800138000"},
    "purchases": {"customer_external_id": "C-1001", "order_no": "SO-2026-0001", "purchased_on": "2026-11-30",
                  "products": "A4 纸 x 20", "amount": "12800.50"},
}


def install(app: FastAPI, router: APIRouter) -> None:
    """Mount the API on an app, with its docs at /api/docs and errors as JSON."""
    app.include_router(router)

    @app.exception_handler(ApiError)
    async def api_error(_request: Request, error: ApiError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if error.status == 401 else None
        return JSONResponse({"error": error.message}, status_code=error.status, headers=headers)


def create_api_app(sessions: async_sessionmaker[AsyncSession], secret: Callable[[], bytes], *,
                   index: LookupIndex | None = None, timezone: str = "Asia/Shanghai") -> FastAPI:
    """A FastAPI app serving only the API and its docs (tests, and role api)."""
    app = FastAPI(title="FieldCRM ERP sync API", version="1", docs_url="/api/docs", redoc_url=None,
                  openapi_url="/api/openapi.json")
    install(app, create_api(sessions, secret, index=index, timezone=timezone))
    return app

