"""The scheduler of a runtime: cron slots per target and per server, and the stale watch.

An explicit target (`PGKEEP_DATABASE_URL`, `[targets.NAME]`) runs its own
schedule. A `[servers.KEY]` runs one schedule for all it holds: each slot first
looks for databases created since (no restart needed), then starts a create for
every one of its targets; the dump pool (PGKEEP_MAX_CONCURRENT_DUMPS) decides
how many run at once, and one failing never stops the others. Slots are claimed
in the control database, keyed by target (or `servers.KEY`), so several
processes run each slot once.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from pgkeep.core.events import SCHEDULER
from pgkeep.core.health import Missed
from pgkeep.core.jobs import Job, JobKind
from pgkeep.core.models import Check
from pgkeep.core.schedule import Schedule, Scheduler
from pgkeep.core.service import BackupService
from pgkeep.errors import ConfigError, PgkeepError
from pgkeep.notify import Message
from pgkeep.postgres.control.ledger import PgLedger
from pgkeep.runtime import Runtime

logger = logging.getLogger(__name__)


def scheduler(runtime: Runtime) -> Scheduler | None:
    """The runtime's schedules and checks; None when it has neither."""
    clock = runtime.factory.clock  # injected: tests never wait for a real cron minute
    now = clock()
    identity = f"{socket.gethostname()}:{os.getpid()}"
    control = runtime.factory.control
    schedules = []
    for name, spec in runtime.specs.items():
        if spec.server is not None:
            continue  # a server's targets run on the server's schedule
        s = spec.settings
        same = spec.target.address == control.address and spec.target.dbname == control.dbname
        if (s.schedule or s.verify_schedule) and same:
            raise ConfigError(
                f"PGKEEP_SCHEDULE_DATABASE: the schedule ledger cannot live in the target "
                f"database {spec.target.dbname!r}; name another database on the same server"
            )
        ledger = PgLedger(control, name)
        missed = _missed(runtime, name)
        if s.schedule:
            run = _run(runtime, name, JobKind.CREATE)
            schedules.append(Schedule("backup", s.schedule, run, ledger, identity, now, missed))
        if s.verify_schedule:
            run = _run(runtime, name, JobKind.VERIFY)
            schedules.append(
                Schedule("verify", s.verify_schedule, run, ledger, identity, now, missed)
            )
    for key, server in runtime.settings.servers.items():
        settings = runtime.settings.for_target(server)
        ledger = PgLedger(control, f"servers.{key}")
        missed = _missed(runtime, key)
        if settings.schedule:
            run = _server_run(runtime, key, JobKind.CREATE)
            schedules.append(
                Schedule("backup", settings.schedule, run, ledger, identity, now, missed)
            )
        if settings.verify_schedule:
            run = _server_run(runtime, key, JobKind.VERIFY)
            schedules.append(
                Schedule("verify", settings.verify_schedule, run, ledger, identity, now, missed)
            )
    checks = _stale_checks(runtime)
    if not schedules and not checks:
        return None
    found = Scheduler(schedules, checks, clock, runtime.settings.scheduler_interval_seconds)
    for service in runtime.services.values():
        service.probes.append(lambda: _scheduler_check(found))
    return found


def _missed(runtime: Runtime, target: str) -> Callable[[str, datetime, str], None]:
    """A slot that could not run (its ledger, the control database, did not answer): an
    alert, sent without the control database, and a log line; it runs once it answers."""

    def missed(kind: str, slot: datetime, cause: str) -> None:
        event = "backup.failed" if kind == "backup" else "verify.failed"
        text = (
            f"scheduled {kind} of {target!r} for {slot.isoformat()} could not run: {cause}; "
            "it runs once the control database answers again"
        )
        logger.error("%s", text)
        record(runtime, target, Missed(kind, slot, cause))
        if runtime.notifier is not None:
            runtime.notifier.send(Message(event, target, slot, text))

    return missed


def record(runtime: Runtime, target: str, missed: Missed) -> None:
    """Keep a missed slot where jobs are (the target reads as failing until a backup
    succeeds, across restarts); one that cannot be kept is logged."""
    try:
        runtime.shared.missed.miss(target, missed)
    except PgkeepError as exc:
        logger.warning("missed slot of %s not recorded: %s", target, exc.message)


def _run(runtime: Runtime, name: str, kind: JobKind) -> Callable[[], None]:
    def run() -> None:
        try:
            run_target(runtime.services[name], kind)
        except _NotStarted as exc:
            record(runtime, name, Missed(_schedule(kind), runtime.factory.clock(), exc.message))
            raise

    return run


def _schedule(kind: JobKind) -> str:
    return "backup" if kind is JobKind.CREATE else "verify"


class _NotStarted(PgkeepError):
    """A scheduled job that could not start (another create still running, a full queue)."""


def _server_run(runtime: Runtime, key: str, kind: JobKind) -> Callable[[], None]:
    return lambda: run_server(runtime, key, kind)


def start(service: BackupService, kind: JobKind) -> Job | None:
    """A scheduled job through the one door (the service's start_*): a create, or a verify
    with restore of the newest signed backup (None: nothing to verify). Like any job, it
    is listed, bounded by its pool and cancellable."""
    if kind is JobKind.CREATE:
        return service.start_create(None, SCHEDULER)
    newest = next((b for b in service.catalog.list() if b.signed), None)
    if newest is None or service.catalog.kind != "database":
        return None
    return service.start_verify(newest.name, restore=True, actor=SCHEDULER)


def run_target(service: BackupService, kind: JobKind) -> None:
    """One slot of a target's schedule: its job, waited for; PgkeepError when it failed
    (_NotStarted when it could not start)."""
    try:
        job = start(service, kind)
    except PgkeepError as exc:
        raise _NotStarted(f"not started: {exc.message}", exc.details) from exc
    if job is None:
        return
    done = service.jobs.wait(job.id)
    if isinstance(done.result, PgkeepError):
        raise done.result
    if done.error:
        raise PgkeepError(f"scheduled {kind} of {service.target} ended: {done.error}")


def run_server(runtime: Runtime, key: str, kind: JobKind) -> None:
    """One slot of a server: find new databases, then a job of `kind` for each target.

    Creates go to the dump pool all at once and are waited for together; verifies one
    after another (each still bounded by the verify pool); a target that fails (or whose
    database was dropped meanwhile) fails only its own job.
    """
    runtime.discover(key)
    names = [
        name
        for name, spec in runtime.specs.items()
        if spec.server == key and name not in runtime.gone
    ]
    jobs: list[Job] = []
    for name in names:
        try:
            job = start(runtime.services[name], kind)
        except PgkeepError as exc:
            logger.error("scheduled %s of %s not started: %s", kind, name, exc.message)
            cause = f"not started: {exc.message}"
            record(runtime, name, Missed(_schedule(kind), runtime.factory.clock(), cause))
            continue
        if job is not None:
            jobs.append(job)
        if kind is not JobKind.CREATE:
            _wait_all(runtime, jobs)
            jobs = []
    _wait_all(runtime, jobs)


def _wait_all(runtime: Runtime, jobs: list[Job]) -> None:
    for job in jobs:
        done = runtime.jobs.wait(job.id)
        if done.error:
            logger.error("scheduled %s of %s failed: %s", done.kind, done.target, done.error)


def _stale_checks(runtime: Runtime) -> list[Callable[[datetime], None]]:
    notifier = runtime.notifier
    if notifier is None:
        return []

    def stale(now: datetime) -> None:
        for name, service in list(runtime.services.items()):
            limit = runtime.specs[name].settings.stale_after
            if limit is None or name in runtime.gone:
                continue
            newest = next((b for b in service.catalog.list() if b.signed and b.manifest), None)
            last = newest.manifest.finished_at if newest and newest.manifest else None
            notifier.check_stale(name, last, now, limit)

    return [stale]


def _scheduler_check(scheduler: Scheduler) -> Check:
    beat = scheduler.heartbeat
    fresh = beat is not None and datetime.now(UTC) - beat < timedelta(minutes=2)
    ok = scheduler.alive and fresh
    return Check("scheduler", ok, f"last tick {beat.isoformat() if beat else 'never'}")
