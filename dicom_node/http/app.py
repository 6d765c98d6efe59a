"""The Starlette application: health, metrics, sign-in, the pages, and error pages that
carry a reason but never a stack trace or patient data."""

from __future__ import annotations

import logging
from pathlib import Path
from urllib.parse import parse_qs

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from sqlalchemy import Engine
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from dicom_node.http.auth import SESSION_COOKIE, Access, Gate
from dicom_node.http.health import Readiness
from dicom_node.http.metrics import NodeCollector
from dicom_node.http.pages import Pages
from dicom_node.ingest.receive import Receiver
from dicom_node.settings import NodeSettings

logger = logging.getLogger(__name__)

PUBLIC = ("/healthz", "/readyz", "/login")
TEMPLATES = Path(__file__).with_name("templates")


def _listening(receiver: Receiver) -> bool:
    try:
        return receiver.port > 0
    except RuntimeError:
        return False


def build_app(settings: NodeSettings, engine: Engine, receiver: Receiver) -> Starlette:
    gate = Gate(settings.http)
    templates = Jinja2Templates(directory=str(TEMPLATES))
    readiness = Readiness(
        engine, settings.storage_dir, settings.min_free_bytes, lambda: _listening(receiver)
    )
    registry = CollectorRegistry(auto_describe=False)
    registry.register(NodeCollector(engine, receiver))
    pages = Pages(settings, engine, templates)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        problems = await run_in_threadpool(readiness.problems)  # database and disk
        if problems:
            return JSONResponse({"status": "unready", "reasons": problems}, status_code=503)
        return JSONResponse({"status": "ready"})

    async def metrics(request: Request) -> Response:
        body = await run_in_threadpool(generate_latest, registry)  # the collector reads the db
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    async def login(request: Request) -> Response:
        if request.method == "GET":
            return templates.TemplateResponse(request, "login.html", {"failed": False})
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        session = gate.session_for((form.get("token") or [""])[0])
        if session is None:
            return templates.TemplateResponse(
                request, "login.html", {"failed": True}, status_code=401
            )
        response = RedirectResponse("/studies", status_code=303)
        response.set_cookie(SESSION_COOKIE, session, httponly=True, samesite="strict")
        return response

    async def logout(request: Request) -> Response:
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE)
        return response

    class Guard(BaseHTTPMiddleware):
        async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
            if request.url.path in PUBLIC:
                return await call_next(request)
            access = gate.access(request)
            if access < Access.READ:
                headers = {"WWW-Authenticate": gate.challenge}
                if request.url.path == "/metrics" or "html" not in request.headers.get(
                    "accept", ""
                ):
                    return PlainTextResponse("authentication required", 401, headers=headers)
                return templates.TemplateResponse(
                    request, "login.html", {"failed": False}, status_code=401, headers=headers
                )
            request.state.access = access
            return await call_next(request)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return _error(templates, request, exc.status_code, exc.detail)

    async def server_error(request: Request, exc: Exception) -> Response:
        logger.error("HTTP %s %s failed: %s", request.method, request.url.path, type(exc).__name__)
        return _error(templates, request, 500, "the page could not be made; see the node's log")

    routes = [
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics),
        Route("/login", login, methods=["GET", "POST"]),
        Route("/logout", logout, methods=["POST"]),
        *pages.routes(),
    ]
    return Starlette(
        routes=routes,
        middleware=[Middleware(Guard)],
        exception_handlers={HTTPException: http_error, Exception: server_error},
    )


def _error(templates: Jinja2Templates, request: Request, status: int, reason: str) -> Response:
    if "html" not in request.headers.get("accept", ""):
        return PlainTextResponse(f"{status}: {reason}", status_code=status)
    return templates.TemplateResponse(
        request, "error.html", {"status": status, "reason": reason}, status_code=status
    )
