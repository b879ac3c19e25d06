"""create_app(): the REST API, the Segment-compatible ingestion API, the dashboard, one error
handler (JSON for the API, a page for the dashboard)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from regulars import __version__, pages
from regulars.config import get_settings
from regulars.db import SQLiteCheckpointer, get_database
from regulars.errors import RegularsError
from regulars.kit import runtime
from regulars.kit.responses import JSONBody

log = logging.getLogger(__name__)


def _validation_details(exc: RequestValidationError) -> list[dict[str, str | list[str]]]:
    return [
        {"loc": [str(part) for part in error.get("loc", ())], "message": str(error.get("msg", ""))}
        for error in exc.errors()
    ]


async def _answer(
    request: Request, error: RegularsError, headers: Mapping[str, str] | None = None
) -> Response:
    """JSON for the API and the public endpoints; for the dashboard, a page, or the sign-in
    page when the session is missing (htmx is told to go there with HX-Redirect)."""
    if not pages.is_dashboard_path(request.url.path):
        return JSONBody(error.to_body(), status_code=error.status, headers=headers)
    if isinstance(error, pages.SignInRequired):
        target = "/login?next=" + quote(
            request.url.path + (f"?{request.url.query}" if request.url.query else ""), safe=""
        )
        if request.headers.get("HX-Request"):
            return Response(status_code=200, headers={"HX-Redirect": target})
        return RedirectResponse(target, status_code=303)
    return await run_in_threadpool(pages.error_page, request, error)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RegularsError)
    async def _regulars_error(request: Request, exc: RegularsError) -> Response:
        return await _answer(request, exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        """Starlette's own answers (unknown path, wrong method) in the one error shape."""
        codes = {404: "not_found", 405: "method_not_allowed"}
        error = RegularsError(
            str(exc.detail), code=codes.get(exc.status_code, "http_error"), status=exc.status_code
        )
        return await _answer(request, error, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _request_invalid(request: Request, exc: RequestValidationError) -> Response:
        details = _validation_details(exc)
        first = details[0] if details else {"loc": [], "message": "invalid request"}
        where = ".".join(first["loc"])
        error = RegularsError(
            f"{where}: {first['message']}" if where else str(first["message"]),
            code="validation_failed",
            status=422,
            details=details,
        )
        return await _answer(request, error)


def create_server_app(*, with_worker: bool | None = None) -> FastAPI:
    """The app of a serving process (`regulars serve`, `uvicorn regulars.app:create_server_app
    --factory`): `create_app`, with the heap settled once started (kit/runtime.py)."""
    return create_app(with_worker=with_worker, settle_heap=True)


def create_app(*, with_worker: bool | None = None, settle_heap: bool = False) -> FastAPI:
    from regulars.analytics.views import router as overview_pages
    from regulars.customers.api import router as customers_router
    from regulars.customers.views import router as customers_pages
    from regulars.identity.settings_views import router as settings_pages
    from regulars.identity.views import router as identity_pages
    from regulars.ingestion.api import router as ingestion_router
    from regulars.journeys.api import router as journeys_router
    from regulars.journeys.views import router as journeys_pages
    from regulars.messages.api import router as messages_router
    from regulars.messages.dashboard import router as messages_dashboard
    from regulars.messages.views import router as messages_pages
    from regulars.segments.api import router as segments_router
    from regulars.segments.views import router as segments_pages

    settings = get_settings()
    run_worker = settings.runs_embedded_worker if with_worker is None else with_worker

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        from regulars.worker import EmbeddedWorker

        embedded = EmbeddedWorker() if run_worker else None
        with SQLiteCheckpointer(get_database()):
            if embedded is not None:
                embedded.start()
            if settle_heap:
                runtime.settle_heap()
            try:
                yield
            finally:
                if embedded is not None:
                    embedded.stop()

    app = FastAPI(
        title="regulars",
        version=__version__,
        openapi_url="/api/openapi.json",
        docs_url="/api/docs",
        redoc_url=None,
        lifespan=lifespan,
    )
    _install_error_handlers(app)
    app.include_router(ingestion_router)
    app.include_router(customers_router)
    app.include_router(segments_router)
    app.include_router(messages_router)
    app.include_router(journeys_router)
    app.include_router(messages_pages)
    for dashboard in (
        identity_pages,
        overview_pages,
        customers_pages,
        segments_pages,
        messages_dashboard,
        journeys_pages,
        settings_pages,
    ):
        app.include_router(dashboard)
    app.mount("/static", StaticFiles(packages=[("regulars", "static")]), name="static")

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    return app
