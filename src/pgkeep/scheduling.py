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
from pgkeep.core.jobs import Job
from pgkeep.core.models import Check
from pgkeep.core.schedule import Schedule, Scheduler
from pgkeep.core.service import BackupService
from pgkeep.errors import ConfigError, PgkeepError
from pgkeep.postgres.ledger import PgLedger
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
        service = runtime.services[name]
        if s.schedule:
            run = _run(scheduled_backup, service)
            schedules.append(Schedule("backup", s.schedule, run, ledger, identity, now))
        if s.verify_schedule:
            run = _run(scheduled_verify, service)
            schedules.append(Schedule("verify", s.verify_schedule, run, ledger, identity, now))
    for key, server in runtime.settings.servers.items():
        settings = runtime.settings.for_target(server)
        ledger = PgLedger(control, f"servers.{key}")
        if settings.schedule:
            run = _server_run(runtime, key, scheduled_backup)
            schedules.append(Schedule("backup", settings.schedule, run, ledger, identity, now))
        if settings.verify_schedule:
            run = _server_run(runtime, key, scheduled_verify)
            schedules.append(
                Schedule("verify", settings.verify_schedule, run, ledger, identity, now)
            )
    checks = _stale_checks(runtime)
    if not schedules and not checks:
        return None
    found = Scheduler(schedules, checks, clock, runtime.settings.scheduler_interval_seconds)
    for service in runtime.services.values():
        service.probes.append(lambda: _scheduler_check(found))
    return found


def _run(work: Callable[[BackupService], None], service: BackupService) -> Callable[[], None]:
    return lambda: work(service)


def _server_run(
    runtime: Runtime, key: str, work: Callable[[BackupService], None]
) -> Callable[[], None]:
    def run() -> None:
        run_server(runtime, key, work)

    return run


def run_server(runtime: Runtime, key: str, work: Callable[[BackupService], None]) -> None:
    """One slot of a server: find new databases, then `work` on each of its targets.

    Creates go to the dump pool all at once and are waited for together; a target that
    fails (or whose database was dropped meanwhile) fails only its own job.
    """
    runtime.discover(key)
    names = [
        name
        for name, spec in runtime.specs.items()
        if spec.server == key and name not in runtime.gone
    ]
    if work is scheduled_backup:
        jobs = []
        for name in names:
            try:
                jobs.append(runtime.services[name].start_create(None, SCHEDULER))
            except PgkeepError as exc:
                logger.error("scheduled backup of %s not started: %s", name, exc.message)
        _wait_all(runtime, jobs)
        return
    for name in names:
        try:
            work(runtime.services[name])
        except PgkeepError as exc:
            logger.error("scheduled %s of %s failed: %s", work.__name__, name, exc.message)


def _wait_all(runtime: Runtime, jobs: list[Job]) -> None:
    for job in jobs:
        done = runtime.jobs.wait(job.id)
        if done.error:
            logger.error("scheduled backup of %s failed: %s", done.target, done.error)


def scheduled_backup(service: BackupService) -> None:
    job = service.jobs.wait(service.start_create(None, SCHEDULER).id)
    if isinstance(job.result, PgkeepError):
        raise job.result


def scheduled_verify(service: BackupService) -> None:
    newest = next((b for b in service.catalog.list() if b.signed), None)
    if newest is not None and service.catalog.kind == "database":
        service.proving.verify(newest.name, restore=True, actor=SCHEDULER)


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
