"""The targets of a running pgkeep and their services: named in settings, or found as the
databases of `[servers.*]` (added as they appear, marked gone as they go, refused when
their folder is another target's). runtime.Runtime adds the process's life to it."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Protocol

from pgkeep import targets
from pgkeep.config import Settings
from pgkeep.core.events import Events
from pgkeep.core.importing import Importing
from pgkeep.core.ports import KnownTargets, Storage
from pgkeep.core.runner import JobRunner
from pgkeep.core.service import BackupService
from pgkeep.core.signing import Signer
from pgkeep.errors import InvalidInput, PgkeepError
from pgkeep.postgres.connection import Connection
from pgkeep.targets import TargetSpec

logger = logging.getLogger(__name__)


class ServiceFactory(Protocol):
    """What every target's service shares, and how one is built (wiring.Factory)."""

    events: Events
    jobs: JobRunner
    signer: Signer
    control: Connection

    def clock(self) -> datetime: ...

    def service(self, spec: TargetSpec) -> BackupService: ...

    def preflight(self, specs: list[TargetSpec]) -> None:
        """Refuse a start a server refuses; name what restores would miss."""
        ...

    def root_store(self) -> Storage:
        """The store's root (job records, the control marker), not a target's prefix."""
        ...

    def databases(self, server: str) -> list[str]: ...


class Registry:
    """Targets by name, each with its service."""

    def __init__(self, settings: Settings, factory: ServiceFactory, known: KnownTargets) -> None:
        self.settings = settings
        self.factory = factory
        self.known = known  # the databases servers were found to hold, kept across restarts
        self.services: dict[str, BackupService] = {}
        self.specs: dict[str, TargetSpec] = {}
        self.gone: set[str] = set()  # found by a server once, not any more
        self.refused = targets.Refusals()  # their folder is another target's

    @property
    def events(self) -> Events:
        return self.factory.events

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
        archives = service.proving.restorers.target
        return Importing(service.catalog, self.events, self.factory.clock, recipients, archives)

    def add(self, spec: TargetSpec) -> BackupService:
        self.specs[spec.name] = spec
        service = self.services[spec.name] = self.factory.service(spec)
        return service

    def discover(self, key: str | None = None) -> list[str]:
        """Find the databases of `[servers.KEY]` (all servers without a key); the new targets.

        A database gone since keeps its target and backups, marked as gone, across restarts
        (the databases found are kept where jobs are: `known`), until its backups are
        deleted; one whose folder is taken is not added (`refused`); an unreachable server
        is tried again next time.
        """
        added = []
        for server_key, server in self.settings.servers.items():
            if key is not None and server_key != key:
                continue
            admin = Connection.from_url(server.url.get_secret_value())
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
                if spec.name not in self.services and self._admit(spec):
                    self.add(spec)
                    added.append(spec.name)
            self.refused.forget(server_key, {s.name for s in found if s.name not in self.specs})
            self._remember(server_key, [s.target.dbname for s in found])
            dropped = [d for d in self._known(server_key) if d not in names]
            for spec in targets.found(self.settings, server_key, server, dropped, skip):
                if spec.name not in self.services and self._admit(spec):
                    self.add(spec)  # a target with backups, whose database is gone
            for name, spec in list(self.specs.items()):
                if spec.server == server_key and spec.kind == "database" and name not in present:
                    self._gone(name, spec)
        for name in added:
            logger.info("found database target=%s", name)
        return added

    def _gone(self, name: str, spec: TargetSpec) -> None:
        """A found target whose database is gone: kept, marked, while it has backups."""
        self.gone.add(name)
        try:
            kept = bool(self.services[name].catalog.list())
        except PgkeepError:
            kept = True  # a store that does not answer: keep the target, look again later
        if kept:
            return
        assert spec.server is not None  # noqa: S101 (a found target's)
        self._forget(spec.server, spec.target.dbname)
        del self.services[name], self.specs[name]
        self.gone.discard(name)
        logger.info("forgot target=%s: its database is gone and it has no backups", name)

    def _remember(self, server: str, databases: list[str]) -> None:
        try:
            self.known.remember(server, databases)
        except PgkeepError as exc:
            logger.error("cannot record the databases of server %s: %s", server, exc.message)

    def _known(self, server: str) -> list[str]:
        try:
            return self.known.known(server)
        except PgkeepError as exc:
            logger.error("cannot read the databases server %s held: %s", server, exc.message)
            return []

    def _forget(self, server: str, database: str) -> None:
        try:
            self.known.forget(server, database)
        except PgkeepError as exc:
            logger.error(
                "cannot forget database %s of server %s: %s", database, server, exc.message
            )

    def _admit(self, spec: TargetSpec) -> bool:
        """A found database becomes a target unless its folder is another target's."""
        holder = targets.sharing_prefix(spec, self.specs.values())
        if holder is not None:
            self.refused.refuse(targets.Refusal(spec, holder.name))  # logged the first time
            if self.refused.watch(holder.name):
                self.services[holder.name].probes.append(lambda: self.refused.check(holder))
        return holder is None
