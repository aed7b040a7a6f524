"""Settings → targets, their services, jobs, the audit log, alerts and the scheduler.

The one place adapters are chosen; the HTTP app and the CLI both start here.
Building touches nothing outside the process: `Runtime.start()` does the
start-up work (discovering the databases of `[servers.*]`, crash recovery,
sweeping scratch databases, the scheduler), so the app runs it in its lifespan
and the CLI only what it needs.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from pydantic import SecretStr

from pgkeep import probes, scheduling, sharing, targets
from pgkeep.config import Settings
from pgkeep.core.apikeys import ApiKeys
from pgkeep.core.audit import Trail
from pgkeep.core.catalog import Catalog
from pgkeep.core.copying import Copier
from pgkeep.core.creating import Creating
from pgkeep.core.events import Events
from pgkeep.core.jobs import Pool
from pgkeep.core.leases import Leases
from pgkeep.core.manifests import ManifestStore
from pgkeep.core.models import Check
from pgkeep.core.ports import Dumper, Storage
from pgkeep.core.proving import Proving, Restorers
from pgkeep.core.restore_rules import RestoreRules
from pgkeep.core.runner import JobRunner
from pgkeep.core.service import BackupService, Pools
from pgkeep.core.signing import Signer
from pgkeep.errors import ConfigError, DatabaseUnavailable
from pgkeep.local.state import default_directory
from pgkeep.notify import Notifier
from pgkeep.postgres import discovery, privileges, tools
from pgkeep.postgres.connection import Connection
from pgkeep.postgres.control.audit_trail import PgAuditTrail
from pgkeep.postgres.control.ledger import PgAuditAnchor
from pgkeep.postgres.dump import PgDumper
from pgkeep.postgres.globals import PgGlobalsDumper
from pgkeep.postgres.restore import PgRestorer
from pgkeep.runtime import Runtime
from pgkeep.storage.audit import AuditLog
from pgkeep.storage.audit_fallback import FallbackTrail
from pgkeep.stores import Stores
from pgkeep.targets import TargetSpec

logger = logging.getLogger(__name__)

AUDIT_FILE = "pgkeep-audit.jsonl"
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Factory:
    """What every target's service shares, and how one is built from its spec."""

    settings: Settings
    root: Storage | None  # a store given instead of the backup directory (tests)
    signer: Signer
    events: Events
    jobs: JobRunner
    pools: Pools
    control: Connection
    clock: Clock
    stores: Stores
    _probes: dict[tuple[str, str], probes.Probe] = field(default_factory=dict)
    _client_tools: Check | None = None

    def databases(self, server: str) -> list[str]:
        """The databases a server's URL reaches that could be dumped."""
        return discovery.databases(Connection.from_url(server))

    def service(self, spec: TargetSpec) -> BackupService:
        s = spec.settings
        bin_dirs = tools.search_dirs(s.pg_bin_dir)
        lock_wait = int(s.lock_wait_timeout.total_seconds())
        server = spec.target.with_dbname("postgres")  # databases are created from here
        dumper: Dumper = PgDumper(spec.target, bin_dirs, s.row_count_max_bytes, lock_wait)
        database = spec.target.dbname
        if spec.kind == "globals":
            dumper = PgGlobalsDumper(spec.target, bin_dirs, lock_wait, s.globals_passwords)
            database = spec.target.address
        storage = self._storage(s, spec.prefix)
        catalog = self._catalog(spec.name, database, storage, s, spec)
        keys = s.age_keys()
        copies = [(store, self._copy_catalog(spec, database, store)) for store in s.copy_to]
        creating = Creating(
            catalog,
            dumper,
            self.events,
            self.clock,
            defaults=s.default_options(),
            min_free_bytes=s.min_free_bytes,
            timeout=s.dump_timeout,
            recipients=keys.recipients,
            drift_policy=s.drift_policy(),
        )
        verify_url = s.verify_database_url
        scratch = Connection.from_url(verify_url.get_secret_value()) if verify_url else server

        def restorer(target: Connection) -> PgRestorer:
            return PgRestorer(target, bin_dirs, jobs=s.restore_jobs, tmp_dir=s.tmp_dir)

        rules = RestoreRules(
            protected=frozenset({self.control.dbname}),
            replace_allow=frozenset(s.restore_replace_allow),
        )
        on_target, on_scratch = restorer(server), restorer(scratch)
        rehearsal = tuple(restorer(c) for c in _rehearsal_servers(s.rehearsal_database_urls))
        restorers = Restorers(on_target, on_scratch, rehearsal)
        probes = [self._restore_probe("restore", on_target)]
        if scratch.address != server.address:
            probes.append(self._restore_probe("verify_restore", on_scratch))
        proving = Proving(
            catalog, restorers, self.events, self.clock, rules, copies, keys, spool=s.tmp_dir
        )
        copier = Copier(catalog, copies, self.events, backoff=s.copy_backoff_seconds)
        self.events.subscribe(copier.on_event)
        service = BackupService(catalog, creating, proving, self.jobs, self.pools, copier=copier)
        service.probes += [self.control_probe.check, *(p.check for p in probes), self.client_tools]
        return service

    @functools.cached_property
    def control_probe(self) -> probes.Probe:
        return probes.control_probe(lambda: privileges.check_control(self.control))

    def _restore_probe(self, name: str, restorer: PgRestorer) -> probes.Probe:
        """One probe per server, whichever targets restore there."""
        key = (name, restorer.server)
        if key not in self._probes:
            self._probes[key] = probes.restore_probe(name, restorer.check_loader)
        return self._probes[key]

    def preflight(self, specs: list[TargetSpec]) -> None:
        """At start, before serving: refuse (ConfigError) a control database or a target that
        answers and refuses what backups need; name what restores would miss."""
        try:
            privileges.check_control(self.control)
        except DatabaseUnavailable as exc:
            logger.error("%s (starting not ready): %s", exc.message, exc.details)
        for spec in specs:
            if spec.kind == "database":
                privileges.check_dump(spec.target)
        for probe in self._probes.values():
            probe.log()
        self.client_tools()  # names, in the log, any psql or pg_restore to upgrade

    def client_tools(self) -> Check:
        """psql and pg_restore as installed: a check that passes, naming any with a known
        restore-time vulnerability (each logged once, when first looked at: at start)."""
        if self._client_tools is None:
            notices = tools.reader_notices(tools.search_dirs(self.settings.pg_bin_dir))
            for line in notices:
                logger.warning("%s", line)
            details = "; ".join(notices) or "no known vulnerability in psql or pg_restore"
            self._client_tools = Check("client_tools", True, details)
        return self._client_tools

    def root_store(self) -> Storage:
        return self.root if self.root is not None else self.stores.primary(self.settings, "")

    def _storage(self, settings: Settings, prefix: str) -> Storage:
        if self.root is not None:
            return self.root
        return self.stores.primary(settings, prefix)

    def _catalog(
        self, name: str, database: str, storage: Storage, settings: Settings, spec: TargetSpec
    ) -> Catalog:
        manifests = ManifestStore(storage, self.signer)
        policy = settings.retention_policy()
        return Catalog(
            name,
            database,
            storage,
            manifests,
            self.events,
            policy,
            self.clock,
            spec.kind,
            prefix=spec.prefix,
            bound=spec.name,
        )

    def _copy_catalog(self, spec: TargetSpec, database: str, store: str) -> Catalog:
        """A copy store's catalog of this target: its own retention (a [stores] section's, or
        the target's)."""
        named = self.settings.stores.get(store)
        settings = spec.settings.model_copy(update=named.retention() if named else {})
        storage = self.stores.open(store, spec.prefix, "PGKEEP_COPY_TO")
        if storage.where == self._storage(spec.settings, spec.prefix).where:
            raise ConfigError(f"PGKEEP_COPY_TO: {store!a} is the primary store itself")
        return self._catalog(f"{spec.name}@{store}", database, storage, settings, spec)


def build(settings: Settings, *, clock: Clock = utc_now, storage: Storage | None = None) -> Runtime:
    """The runtime for `settings`; `storage` replaces the backup directory (tests)."""
    specs = targets.explicit(settings)
    if not specs and not settings.servers:
        raise ConfigError(
            "PGKEEP_DATABASE_URL: not set; it names the database to back up "
            "(or name targets and servers in PGKEEP_CONFIG)"
        )
    control = control_database(settings, specs)
    current, old = settings.signing_keys()
    signer = Signer(current, old)
    events = Events(clock)
    stores = Stores(settings)
    shared, database = sharing.decide(settings, control)
    jobs = JobRunner(shared.board, clock, events=events)
    pools = Pools(
        dumps=Pool("dumps", settings.max_concurrent_dumps),
        proving=Pool("proving", settings.verify_concurrency, settings.verify_queue),
    )
    factory = Factory(settings, storage, signer, events, jobs, pools, control, clock, stores)
    audit: Trail
    if database is not None:  # one chain for every instance, as rows; a local file while down
        shared_trail = PgAuditTrail(database.connection, signer.derive("audit"), database.where)
        pending = (settings.state_dir or default_directory()) / "audit-pending.jsonl"
        audit = FallbackTrail(shared_trail, AuditLog(pending, signer.derive("audit")))
    else:
        audit = audit_log(
            settings, signer, settings.audit_log or settings.backup_dir / AUDIT_FILE, control
        )
    events.record_in(audit.on_event)
    runtime = Runtime(settings, factory, audit, shared)
    for spec in specs:
        runtime.add(spec)
    if settings.notify_urls:
        secret = settings.notify_secret.get_secret_value() if settings.notify_secret else None
        runtime.notifier = Notifier(
            settings.notify_urls,
            secret,
            send_success=settings.notify_success,
            episodes=shared.episodes,
        )
        events.subscribe(runtime.notifier.on_event)
    runtime.scheduler = scheduling.scheduler(runtime)
    runtime.leases = Leases(jobs, shared.board, runtime.after_lapsed)
    jobs.after_reaped = runtime.after_lapsed
    return runtime


def api_keys(runtime: Runtime) -> ApiKeys:
    """API keys as every entry point checks and mints them (the app, the CLI)."""
    shared = runtime.shared
    return ApiKeys(
        shared.keys, shared.attempts, runtime.signer, runtime.events, runtime.factory.clock
    )


def control_database(settings: Settings, specs: list[TargetSpec]) -> Connection:
    """Where the schedule ledger and the audit anchor live (PGKEEP_CONTROL_DATABASE_URL, or
    PGKEEP_SCHEDULE_DATABASE on the one server every target is on)."""
    if settings.control_database_url is not None:
        return Connection.from_url(settings.control_database_url.get_secret_value())
    servers = {spec.target.address: spec.target for spec in specs}
    for server in settings.servers.values():
        admin = Connection.from_url(server.url.get_secret_value())
        servers.setdefault(admin.address, admin)
    if len(servers) > 1:
        raise ConfigError(
            "PGKEEP_CONTROL_DATABASE_URL: required when targets live on several servers "
            f"({', '.join(sorted(servers))}); name the database for pgkeep's ledger"
        )
    return next(iter(servers.values())).with_dbname(settings.schedule_database)


def audit_log(
    settings: Settings, signer: Signer, path: Path, control: Connection | None = None
) -> AuditLog:
    """The audit log at `path`, its chain keyed from the signing key, its head anchored in
    the control database."""
    if control is None:
        control = control_database(settings, targets.explicit(settings))
    anchor = PgAuditAnchor(control, str(path.resolve()))
    return AuditLog(path, signer.derive("audit"), anchor)


def _rehearsal_servers(urls: tuple[SecretStr, ...]) -> list[Connection]:
    """PGKEEP_REHEARSAL_DATABASE_URLS as connections (an error names the setting, not URLs)."""
    try:
        return [Connection.from_url(u.get_secret_value()) for u in urls]
    except ConfigError as exc:
        reason = exc.message.split(": ", 1)[-1]
        raise ConfigError(f"PGKEEP_REHEARSAL_DATABASE_URLS: {reason}") from None
