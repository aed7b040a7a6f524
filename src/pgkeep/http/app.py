"""create_app: the FastAPI application over a `Runtime` (wiring.build), started in its lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from pgkeep import __version__, wiring
from pgkeep.config import Settings
from pgkeep.core.idempotency import Idempotent
from pgkeep.http import errors
from pgkeep.http.access_log import AccessLogMiddleware
from pgkeep.http.audit import AuditRefusals, note_core_event
from pgkeep.http.limits import RequestLimits
from pgkeep.http.metrics import Metrics
from pgkeep.http.metrics import router as metrics_router
from pgkeep.http.routes import (
    audit,
    backups,
    console,
    contents,
    creating,
    health,
    jobs,
    keeping,
    keys,
    ready,
    storage,
    targets,
)
from pgkeep.runtime import Runtime
from pgkeep.tickets import TicketIssuer
from pgkeep.tokens import TokenVerifier


def create_app(settings: Settings, runtime: Runtime | None = None) -> FastAPI:
    """The app; `runtime` may be given (tests), else it is built from settings.

    Start-up work (removing partial files, sweeping scratch databases, failing
    interrupted jobs, the scheduler) runs in the lifespan, before serving.
    """
    settings.check_for_serving()
    runtime = runtime if runtime is not None else wiring.build(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(runtime.start)
        try:
            yield
        finally:
            await run_in_threadpool(runtime.stop)

    # No /docs or /redoc: Swagger UI loads from a CDN (blank offline, and no CSP would
    # allow it). The OpenAPI document stays at /openapi.json.
    app = FastAPI(
        title="pgkeep",
        version=__version__,
        summary="PostgreSQL backups you can trust",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.runtime = runtime
    app.state.verifier = TokenVerifier(settings)
    app.state.tickets = TicketIssuer(
        key=runtime.signer.secret("tickets"), redeem_once=runtime.shared.tickets.redeem_once
    )

    app.state.api_keys = wiring.api_keys(runtime)
    app.state.idempotent = Idempotent(
        runtime.shared.claims, runtime.jobs.get, runtime.factory.clock
    )

    def target_of(name: str | None) -> str | None:  # ?target= of a ticket's download
        found = runtime.find(name)
        return None if found is None else found.target

    app.state.target_of = target_of
    app.state.metrics = Metrics(runtime, settings)
    runtime.events.subscribe(note_core_event)
    errors.install(app)
    app.include_router(health.router)
    app.include_router(ready.router)
    app.include_router(metrics_router)
    app.include_router(console.router)
    app.include_router(jobs.router)  # before backups: DELETE /api/backup/{filename:path}
    app.include_router(targets.router)
    app.include_router(storage.router)
    app.include_router(audit.router)
    app.include_router(keeping.router)  # before backups' DELETE /api/backup/{filename:path}
    app.include_router(contents.router)
    app.include_router(creating.router)
    app.include_router(backups.router)
    app.include_router(keys.router)
    app.add_middleware(AuditRefusals, log=runtime.audit)
    app.add_middleware(RequestLimits, max_bytes=settings.max_body_bytes)
    app.add_middleware(AccessLogMiddleware)
    return app
