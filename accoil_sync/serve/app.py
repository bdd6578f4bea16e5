"""The ``serve`` ASGI application: card routes, ``/healthz``, ``/readyz``, ``/metrics`` and the trigger API."""

from __future__ import annotations

import hmac
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from accoil_sync.card.app import CardService, JSONResponse, card_routes
from accoil_sync.card.limits import BodyLimit
from accoil_sync.card.store import CardReader
from accoil_sync.config.settings import Settings
from accoil_sync.serve.scheduler import Busy, Scheduler
from accoil_sync.sync.state import StateStore
from accoil_sync.telemetry import REGISTRY

log = logging.getLogger("accoil_sync.serve")


def create_app(settings: Settings, scheduler: Scheduler | None = None) -> Starlette:
    """``scheduler=None`` serves the card and health endpoints only (no syncs in this process)."""
    reader = CardReader(settings.state.path)
    service = CardService(settings, reader)
    token = settings.serve.trigger_token.get_secret_value() if settings.serve.trigger_token else None
    shutting_down = False

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        problems = []
        if shutting_down:
            problems.append("shutting down")
        if settings.destinations.card.enabled and service.secret is None:
            problems.append("serve.hubspot_client_secret is not set")
        try:
            if not reader.ready():
                problems.append("no state store yet (run a sync first)")
        except Exception as exc:  # a locked or corrupt file: not ready, and say why
            problems.append(f"state store unreadable: {type(exc).__name__}")
        if problems:
            return JSONResponse({"status": "not ready", "problems": problems}, status_code=503)
        return JSONResponse({"status": "ready"})

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    def authorised(request: Request) -> Response | None:
        if token is None:
            return JSONResponse({"error": "the trigger API is off: set serve.trigger_token"}, status_code=404)
        given = request.headers.get("authorization", "")
        scheme, _, value = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), token.encode()):
            return JSONResponse(
                {"error": "missing or wrong bearer token"},
                status_code=401,
                headers={"WWW-Authenticate": 'Bearer realm="accoil-sync"'},
            )
        return None

    async def trigger(request: Request) -> Response:
        if (refused := authorised(request)) is not None:
            return refused
        if scheduler is None:
            return JSONResponse({"error": "this process does not run syncs"}, status_code=503)
        outcome = scheduler.trigger("api")
        if isinstance(outcome, Busy):
            return JSONResponse(
                {"error": "a sync is already running", "detail": outcome.reason}, status_code=409
            )
        return JSONResponse(
            {"run_id": outcome.run_id, "status_url": f"/syncs/{outcome.run_id}"}, status_code=202
        )

    async def run_status(request: Request) -> Response:
        if (refused := authorised(request)) is not None:
            return refused
        run_id = request.path_params["run_id"]
        state = StateStore(settings.state.path)
        try:
            found = next(iter(state.runs(limit=1, run_id=run_id)), None)
        finally:
            state.close()
        if found is None:
            pending = scheduler is not None and scheduler.current_run == run_id
            if pending:
                return JSONResponse({"run_id": run_id, "status": "starting"})
            return JSONResponse({"error": f"no run {run_id}"}, status_code=404)
        return JSONResponse(
            {
                "run_id": found.run_id,
                "status": found.status,
                "exit_code": found.exit_code,
                "started_at": found.started_at,
                "ended_at": found.ended_at,
                "invalid_rows": found.invalid_rows,
                "message": found.message,
                "counts": found.counts,
            }
        )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        nonlocal shutting_down
        if scheduler is not None:
            scheduler.start()
        try:
            yield
        finally:
            shutting_down = True
            if scheduler is not None:
                await scheduler.shutdown(settings.serve.shutdown_grace_seconds)
            reader.close()

    routes = [
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics),
        Route("/syncs/trigger", trigger, methods=["POST"]),
        Route("/syncs/{run_id}", run_status),
        *card_routes(service),
    ]
    # the body cap wraps every route, so nothing (not even the signature check) reads an oversized body
    return Starlette(routes=routes, lifespan=lifespan, middleware=[Middleware(BodyLimit)])
