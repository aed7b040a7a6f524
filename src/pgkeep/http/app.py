"""create_app: the FastAPI application, with adapters chosen here and nowhere else in the edge."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from fastapi import FastAPI

from pgkeep import __version__
from pgkeep.config import Settings
from pgkeep.core.models import Check
from pgkeep.core.schedule import Schedule, Scheduler
from pgkeep.core.service import BackupService, Restorers
from pgkeep.errors import ConfigError, PgkeepError, StorageError
from pgkeep.http import errors
from pgkeep.http.access_log import AccessLogMiddleware
from pgkeep.http.audit import AuditMiddleware
from pgkeep.http.metrics import Metrics
from pgkeep.http.metrics import router as metrics_router
from pgkeep.http.routes import backups, console, health, jobs, ready
from pgkeep.notify import Notifier
from pgkeep.postgres import tools
from pgkeep.postgres.dump import PgDumper
from pgkeep.postgres.ledger import PgLedger
from pgkeep.postgres.restore import PgRestorer
from pgkeep.postgres.target import Target
from pgkeep.storage import LocalStorage
from pgkeep.storage.audit import AuditLog
from pgkeep.tickets import TicketIssuer
from pgkeep.tokens import TokenVerifier

AUDIT_FILE = "pgkeep-audit.jsonl"


def build_service(settings: Settings) -> BackupService:
    """The production wiring: the target from settings, a local directory, the real pg_dump."""
    target = Target.from_url(settings.require_database_url())
    try:
        storage = LocalStorage(settings.backup_dir)
    except StorageError as exc:
        raise ConfigError(f"PGKEEP_BACKUP_DIR: {exc.message}") from exc
    bin_dirs = tools.search_dirs(settings.pg_bin_dir)
    dumper = PgDumper(target, bin_dirs, settings.row_count_max_bytes)
    # Databases are created and dropped from the maintenance database, never from the one
    # being replaced. Test restores go to PGKEEP_VERIFY_DATABASE_URL's server when set.
    admin = target.with_dbname("postgres")
    verify_url = settings.verify_database_url
    scratch = Target.from_url(verify_url.get_secret_value()) if verify_url else admin

    def restorer(server: Target) -> PgRestorer:
        return PgRestorer(server, bin_dirs, jobs=settings.restore_jobs, tmp_dir=settings.tmp_dir)

    restorers = Restorers(target=restorer(admin), scratch=restorer(scratch))
    return BackupService(
        storage,
        dumper,
        retention=settings.retention_policy(),
        restorers=restorers,
        defaults=settings.default_options(),
        min_free_bytes=settings.min_free_bytes,
    )


def build_scheduler(
    settings: Settings, service: BackupService, notifier: Notifier | None
) -> Scheduler | None:
    """Schedules from settings, coordinated through a ledger on the target's server."""
    target = Target.from_url(settings.require_database_url())
    if (settings.schedule or settings.verify_schedule) and (
        target.dbname == settings.schedule_database
    ):
        raise ConfigError(
            f"PGKEEP_SCHEDULE_DATABASE: the schedule ledger cannot live in the target database "
            f"{target.dbname!r}; name another database on the same server"
        )
    ledger = PgLedger(target.with_dbname(settings.schedule_database), target.dbname)
    identity = f"{socket.gethostname()}:{os.getpid()}"
    now = datetime.now(UTC)
    schedules = []
    if settings.schedule:
        schedules.append(
            Schedule(
                "backup",
                settings.schedule,
                lambda: _scheduled_backup(service),
                ledger,
                identity,
                now,
            )
        )
    if settings.verify_schedule:
        schedules.append(
            Schedule(
                "verify",
                settings.verify_schedule,
                lambda: _scheduled_verify(service),
                ledger,
                identity,
                now,
            )
        )
    checks: list[Callable[[datetime], None]] = []
    stale_after = settings.stale_after
    if stale_after is not None and notifier is not None:

        def stale(now: datetime) -> None:
            newest = next((b for b in service.list() if b.manifest), None)
            last = newest.manifest.finished_at if newest and newest.manifest else None
            notifier.check_stale(service.target, last, now, stale_after)

        checks.append(stale)
    if not schedules and not checks:
        return None
    return Scheduler(
        schedules, checks, lambda: datetime.now(UTC), settings.scheduler_interval_seconds
    )


def _scheduled_backup(service: BackupService) -> None:
    job = service.jobs.wait(service.start_create(created_by="scheduler").id)
    if isinstance(job.result, PgkeepError):
        raise job.result


def _scheduled_verify(service: BackupService) -> None:
    newest = next(iter(service.list()), None)
    if newest is not None:
        service.verify(newest.name, restore=True)


def create_app(settings: Settings, service: BackupService | None = None) -> FastAPI:
    """The app; `service` may be given (tests), else it is built from settings.

    Leftover `.partial` files from a crash are removed here, before serving.
    """
    settings.check_for_serving()
    service = service if service is not None else build_service(settings)
    service.recover()
    app = FastAPI(title="pgkeep", version=__version__, summary="PostgreSQL backups you can trust")
    app.state.service = service
    app.state.verifier = TokenVerifier(settings)
    app.state.tickets = TicketIssuer()
    errors.install(app)
    app.state.metrics = Metrics(service, settings)
    notifier = None
    if settings.notify_urls:
        secret = settings.notify_secret.get_secret_value() if settings.notify_secret else None
        notifier = Notifier(settings.notify_urls, secret, send_success=settings.notify_success)
        service.listeners.append(notifier.on_event)
    app.state.notifier = notifier
    app.state.scheduler = scheduler = build_scheduler(settings, service, notifier)
    if scheduler is not None:
        service.readiness_probes.append(lambda: _scheduler_check(scheduler))
    app.include_router(health.router)
    app.include_router(ready.router)
    app.include_router(metrics_router)
    app.include_router(console.router)
    app.include_router(jobs.router)  # before backups: DELETE /api/backup/{filename:path}
    app.include_router(backups.router)
    audit_path = settings.audit_log or settings.backup_dir / AUDIT_FILE
    app.state.audit = AuditLog(audit_path)
    app.add_middleware(AuditMiddleware, log=app.state.audit)
    app.add_middleware(AccessLogMiddleware)
    return app


def _scheduler_check(scheduler: Scheduler) -> Check:
    beat = scheduler.heartbeat
    fresh = beat is not None and datetime.now(UTC) - beat < timedelta(minutes=2)
    ok = scheduler.alive and fresh
    return Check("scheduler", ok, f"last tick {beat.isoformat() if beat else 'never'}")
