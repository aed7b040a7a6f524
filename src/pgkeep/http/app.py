"""create_app: the FastAPI application, with adapters chosen here and nowhere else in the edge."""

from __future__ import annotations

from fastapi import FastAPI

from pgkeep import __version__
from pgkeep.config import Settings
from pgkeep.core.service import BackupService, Restorers
from pgkeep.errors import ConfigError, StorageError
from pgkeep.http import errors
from pgkeep.http.access_log import AccessLogMiddleware
from pgkeep.http.audit import AuditMiddleware
from pgkeep.http.metrics import Metrics
from pgkeep.http.metrics import router as metrics_router
from pgkeep.http.routes import backups, console, health, jobs, ready
from pgkeep.postgres import tools
from pgkeep.postgres.dump import PgDumper
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
