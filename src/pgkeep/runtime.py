"""A running pgkeep: its registry of targets (registry.py) and its life.

Built by `wiring.build` (which chooses the adapters); used by the HTTP app, the
CLI and the scheduler. `start()` is the start-up work: discovering the databases
of `[servers.*]`, crash recovery, sweeping scratch databases, the scheduler.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from pgkeep import markers
from pgkeep.config import Settings
from pgkeep.core.audit import Trail
from pgkeep.core.credentials import Attempts, KeyStore
from pgkeep.core.events import Event, Events
from pgkeep.core.health import MissedSlots
from pgkeep.core.idempotency import Claims
from pgkeep.core.jobs import Job, JobBoard, JobKind
from pgkeep.core.leases import Leases
from pgkeep.core.ports import (
    ChangeFeed,
    ControlIdentity,
    Episodes,
    KnownTargets,
    TicketLedger,
)
from pgkeep.core.runner import JobRunner
from pgkeep.core.schedule import Scheduler
from pgkeep.core.signing import Signer
from pgkeep.errors import PgkeepError
from pgkeep.notify import Notifier
from pgkeep.registry import Registry, ServiceFactory

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Shared:
    """What this process shares with others (wiring.sharing decides, once): the job board,
    download tickets, the change feed, the control database's identity (None alone),
    alert episodes, missed slots, API keys, failed key attempts and idempotency claims."""

    board: JobBoard
    tickets: TicketLedger
    feed: ChangeFeed
    identity: ControlIdentity | None
    known: KnownTargets
    episodes: Episodes
    missed: MissedSlots
    keys: KeyStore
    attempts: Attempts
    claims: Claims


class Runtime(Registry):
    """Everything one pgkeep process runs, built from settings: its targets (the registry)
    and its life: start-up work, leases, the change feed, the scheduler, shutdown."""

    def __init__(
        self, settings: Settings, factory: ServiceFactory, audit: Trail, shared: Shared
    ) -> None:
        super().__init__(settings, factory, shared.known)
        self.audit = audit
        self.shared = shared
        self.notifier: Notifier | None = None
        self.scheduler: Scheduler | None = None
        self.leases: Leases | None = None
        self._stopping = threading.Event()
        self._grace_until: float | None = None  # set when shutting down began
        self._started = False

    @property
    def events(self) -> Events:
        return self.factory.events

    @property
    def jobs(self) -> JobRunner:
        return self.factory.jobs

    @property
    def signer(self) -> Signer:
        return self.factory.signer

    def start(self) -> None:
        """Start-up work: check the stores, find databases, recover from a crash, then start
        the scheduler. A store that refuses the credentials, or has no such bucket, stops
        the start with one line naming it; one that cannot be reached is only logged. Once."""
        if self._started:
            return
        self._started = True
        for service in self.services.values():
            service.check_stores()
        markers.check(self.factory.root_store(), self.shared.identity)
        self.factory.preflight([s for s in self.specs.values() if s.server is None])
        self.discover()
        self.jobs.recover()  # only the jobs whose process stopped
        live, young = self._live()
        for service in self.services.values():
            service.recover(live.get(service.target, frozenset()), young)
        if self.leases is not None:
            self.leases.start()
        self.events.subscribe(self._announce)
        threading.Thread(
            target=self.shared.feed.listen,
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
            service.warm()

    def _live(self) -> tuple[dict[str, frozenset[str]], float]:
        """Per target, the backups other processes are writing now, and how young a leftover
        must be to be left alone (another process's create may not have named it yet)."""
        board = self.shared.board
        live: dict[str, set[str]] = {}
        for job in board.live():
            if job.filename:
                live.setdefault(job.target, set()).add(job.filename)
        return {t: frozenset(n) for t, n in live.items()}, board.young_seconds

    def _announce(self, event: Event) -> None:
        """A change to a target's backups made here: every other process relists it."""
        quiet = ("download", "download-link", "audit")
        if event.outcome != "succeeded" or event.action in quiet:
            return
        try:
            self.shared.feed.announce(event.target)
        except PgkeepError as exc:
            logger.warning("could not announce a change of %s: %s", event.target, exc.message)

    def _changed_elsewhere(self, target: str) -> None:
        services = list(self.services.values()) if target == "*" else [self.services.get(target)]
        for service in filter(None, services):
            for catalog in service.catalogs:
                catalog.storage.changed_elsewhere()

    def after_lapsed(self, job: Job) -> None:
        """A job of a stopped instance was failed: remove what its create left behind."""
        service = self.services.get(job.target)
        if service is None or job.kind is not JobKind.CREATE:
            return
        live, young = self._live()
        dead = frozenset({job.filename}) if job.filename else frozenset()
        removed = service.catalog.remove_partials(live.get(job.target, frozenset()), young, dead)
        if removed:
            logger.warning("removed after job %s of a stopped instance: %s", job.id, removed)

    @property
    def instance(self) -> str:
        return self.shared.board.instance

    def announcing(self) -> None:
        """Tell other processes of this one's changes to backups (the CLI: a running server
        relists what it changed); `start()` does this for a server."""
        if not self._started:
            self.events.subscribe(self._announce)

    @contextmanager
    def keeping_leases(self) -> Iterator[None]:
        """While the block runs, this process renews its jobs' leases (the CLI, whose job
        other processes see on the board); `start()` does this for a server."""
        if self._started or self.leases is None:
            yield
            return
        self.leases.start()
        try:
            yield
        finally:
            self.leases.stop()
            self.shared.board.close()

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
        self.shared.board.close()
