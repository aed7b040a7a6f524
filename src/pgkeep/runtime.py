"""A running pgkeep: its targets and their services, found and added as servers are searched.

Built by `wiring.build` (which chooses the adapters); used by the HTTP app, the
CLI and the scheduler. `start()` is the start-up work: discovering the databases
of `[servers.*]`, crash recovery, sweeping scratch databases, the scheduler.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from pgkeep import markers, targets
from pgkeep.config import Settings
from pgkeep.core.events import Event, Events
from pgkeep.core.importing import Importing
from pgkeep.core.jobs import Job, JobKind, JobRunner
from pgkeep.core.leases import Leases
from pgkeep.core.ports import Storage
from pgkeep.core.schedule import Scheduler
from pgkeep.core.service import BackupService
from pgkeep.core.signing import Signer
from pgkeep.errors import ConfigError, InvalidInput, PgkeepError, Unavailable
from pgkeep.notify import Notifier
from pgkeep.postgres.target import Target
from pgkeep.storage.audit import Trail
from pgkeep.targets import TargetSpec

logger = logging.getLogger(__name__)


class ServiceFactory(Protocol):
    """What every target's service shares, and how one is built (wiring.Factory)."""

    events: Events
    jobs: JobRunner
    signer: Signer
    control: Target

    def clock(self) -> datetime: ...

    def service(self, spec: TargetSpec) -> BackupService: ...

    def root_store(self) -> Storage:
        """The store's root (job records, the control marker), not a target's prefix."""
        ...

    def databases(self, server: str) -> list[str]: ...


@dataclass
class Runtime:
    """Everything one pgkeep process runs, built from settings."""

    settings: Settings
    factory: ServiceFactory
    audit: Trail
    services: dict[str, BackupService] = field(default_factory=dict)
    specs: dict[str, TargetSpec] = field(default_factory=dict)
    gone: set[str] = field(default_factory=set)  # found by a server once, not any more
    notifier: Notifier | None = None
    scheduler: Scheduler | None = None
    leases: Leases | None = None  # with a shared control database
    _stopping: threading.Event = field(default_factory=threading.Event)
    _grace_until: float | None = None  # set when shutting down began

    @property
    def events(self) -> Events:
        return self.factory.events

    @property
    def jobs(self) -> JobRunner:
        return self.factory.jobs

    @property
    def signer(self) -> Signer:
        return self.factory.signer

    def find(self, name: str | None = None) -> BackupService | None:
        """The named target's service; without a name, the only one or `default_target`;
        None when that names no target."""
        name = name if name is not None else self.settings.default_target
        if name is None and len(self.services) == 1:
            return next(iter(self.services.values()))
        return None if name is None else self.services.get(name)

    def service(self, name: str | None = None) -> BackupService:
        """As `find`, or InvalidInput naming the choices (callers are authenticated)."""
        found = self.find(name)
        if found is not None:
            return found
        choices = ", ".join(sorted(self.services)) or "none"
        if name is None and self.settings.default_target is None:
            raise InvalidInput(
                "several targets: name one with ?target= (or set PGKEEP_DEFAULT_TARGET)", choices
            )
        wanted = name if name is not None else str(self.settings.default_target)
        raise InvalidInput(f"no target {wanted[:80]!a}", f"targets: {choices}")

    def importer(self, service: BackupService) -> Importing:
        recipients = service.creating.recipients
        return Importing(service.catalog, self.events, self.factory.clock, recipients)

    def add(self, spec: TargetSpec) -> BackupService:
        self.specs[spec.name] = spec
        service = self.services[spec.name] = self.factory.service(spec)
        return service

    def discover(self, key: str | None = None) -> list[str]:
        """Find the databases of `[servers.KEY]` (all servers without a key); the new targets.

        A database gone since keeps its target and backups, marked as gone; a server
        that cannot be reached keeps what it had and is tried again next time.
        """
        added = []
        for server_key, server in self.settings.servers.items():
            if key is not None and server_key != key:
                continue
            admin = Target.from_url(server.url.get_secret_value())
            try:
                names = self.factory.databases(server.url.get_secret_value())
            except PgkeepError as exc:
                logger.error("cannot list databases of server %s: %s", server_key, exc.message)
                continue
            skip = (
                {self.factory.control.dbname}
                if admin.address == self.factory.control.address
                else set()
            )
            found = targets.found(self.settings, server_key, server, names, skip)
            present = {spec.name for spec in found}
            for spec in found:
                self.gone.discard(spec.name)
                if spec.name not in self.services:
                    self.add(spec)
                    added.append(spec.name)
            for name, spec in self.specs.items():
                if spec.server == server_key and spec.kind == "database" and name not in present:
                    self.gone.add(name)
        for name in added:
            logger.info("found database target=%s", name)
        return added

    def start(self) -> None:
        """Start-up work: check the stores, find databases, recover from a crash, then start
        the scheduler. A store that refuses the credentials, or has no such bucket, stops
        the start with one line naming it; one that cannot be reached is only logged."""
        for service in self.services.values():
            self._check_store(service)
        markers.check(self.factory.root_store(), self.jobs.coordination)
        self.discover()
        self.jobs.recover()  # shared: fail only the jobs whose lease lapsed
        live, young = self._live()
        for service in self.services.values():
            service.recover(live.get(service.target, frozenset()), young)
        if self.leases is not None:
            self.leases.start()
        coordination = self.jobs.coordination
        if coordination is not None:
            self.events.subscribe(self._announce)
            threading.Thread(
                target=coordination.listen,
                args=(self._changed_elsewhere, self._stopping),
                name="listen",
                daemon=True,
            ).start()
        if self.scheduler is not None:
            self.scheduler.start()
        threading.Thread(target=self._warm, name="warm-lists", daemon=True).start()

    def _warm(self) -> None:
        """Read every store's list (and so its manifests) once, so the first request after
        a start does not wait for 10,000 manifests in S3 to be read."""
        for service in list(self.services.values()):
            copies = service.copier.copies if service.copier else []
            for catalog in [service.catalog, *(c for _, c in copies)]:
                try:
                    catalog.list()
                except PgkeepError as exc:
                    logger.info("store %s not listed at start: %s", catalog.storage.where, exc)

    def _live(self) -> tuple[dict[str, frozenset[str]], float]:
        """Per target, the backups other instances are writing now, and how young a leftover
        must be to be left alone (another instance's create may not have named it yet)."""
        coordination = self.jobs.coordination
        if coordination is None:
            return {}, 0.0
        live: dict[str, set[str]] = {}
        for job in coordination.live():
            if job.filename:
                live.setdefault(job.target, set()).add(job.filename)
        return {t: frozenset(n) for t, n in live.items()}, coordination.lease_seconds

    def _announce(self, event: Event) -> None:
        """A change to a target's backups made here: every other instance relists it."""
        coordination = self.jobs.coordination
        quiet = ("download", "download-link", "audit")
        if coordination is None or event.outcome != "succeeded" or event.action in quiet:
            return
        try:
            coordination.announce(event.target)
        except PgkeepError as exc:
            logger.warning("could not announce a change of %s: %s", event.target, exc.message)

    def _changed_elsewhere(self, target: str) -> None:
        services = list(self.services.values()) if target == "*" else [self.services.get(target)]
        for service in services:
            if service is None:
                continue
            copies = service.copier.copies if service.copier else []
            for catalog in [service.catalog, *(c for _, c in copies)]:
                catalog.storage.changed_elsewhere()

    def after_lapsed(self, job: Job) -> None:
        """A job of a stopped instance was failed: remove what its create left behind."""
        service = self.services.get(job.target)
        if service is None or job.kind is not JobKind.CREATE:
            return
        live, young = self._live()
        removed = service.catalog.remove_partials(live.get(job.target, frozenset()), young)
        if removed:
            logger.warning("removed after job %s of a stopped instance: %s", job.id, removed)

    @staticmethod
    def _check_store(service: BackupService) -> None:
        stores = [service.catalog] + [
            c for _, c in (service.copier.copies if service.copier else [])
        ]
        for catalog in stores:
            try:
                catalog.storage.check()
            except Unavailable as exc:
                logger.error("store %s: %s (retried on use)", catalog.storage.where, exc.message)
            except PgkeepError as exc:
                raise ConfigError(f"{catalog.storage.where}: {exc.message}", exc.details) from exc

    @property
    def instance(self) -> str:
        coordination = self.jobs.coordination
        return (
            coordination.instance
            if coordination is not None
            else f"{socket.gethostname()}:{os.getpid()}"
        )

    def shutting_down(self) -> None:
        """SIGTERM (or Ctrl-C): take no more jobs and hand the queued ones back at once;
        the running ones get the grace period (`stop`). Safe to call more than once."""
        if self._grace_until is not None:
            return
        self._grace_until = time.monotonic() + self.settings.shutdown_grace_seconds
        if self.scheduler is not None:  # claim no slot it could not start: others will
            self.scheduler.stop(wait=False)
        reason = f"instance {self.instance} is shutting down"
        for job in self.jobs.close(reason):
            logger.warning(
                "shutdown: queued job %s (%s %s) handed back", job.id, job.kind, job.target
            )

    def stop(self) -> None:
        """Shut down: running jobs finish within the grace period or are cancelled and
        cleaned up (pg_dump stopped, partial or upload removed), each logged as which."""
        self.shutting_down()
        if self.scheduler is not None:
            self.scheduler.stop()
        assert self._grace_until is not None  # noqa: S101 (set just above)
        drained = self.jobs.drain(
            self._grace_until, f"cancelled: instance {self.instance} shut down before it finished"
        )
        for job_id in drained.finished:
            logger.info("shutdown: job %s finished within the grace period", job_id)
        for job_id in drained.cancelled:
            logger.warning("shutdown: job %s cancelled and cleaned up", job_id)
        for job_id in drained.stuck:
            logger.error("shutdown: job %s did not stop; its lease will lapse", job_id)
        self._stopping.set()
        if self.leases is not None:
            self.leases.stop()
        if self.jobs.coordination is not None:
            self.jobs.coordination.close()
