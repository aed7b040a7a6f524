"""The catalog of one target's backups: list, look up, open, delete, pin, and retention.

Only backups that are this target's are considered: a backup whose manifest
names another database (two services sharing a directory), or whose signed
manifest was made for another target or store prefix (staging's backup copied into
prod's folder), is neither listed nor ever deleted here. Backups without a manifest
pgkeep can read are listed, so an operator sees them, but retention never deletes them
and they are never restored; the floor counts only signed, unfailed backups.
"""

from __future__ import annotations

import builtins
import contextlib
import logging
import threading
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta

from pgkeep.core import labels, naming, retention
from pgkeep.core.events import RETENTION, Actor, Events
from pgkeep.core.manifests import ManifestStore
from pgkeep.core.models import Backup, StoredObject, Trust
from pgkeep.core.ports import ReadHandle, Storage
from pgkeep.core.retention import RetentionPolicy
from pgkeep.errors import Conflict, NotFound, PgkeepError

logger = logging.getLogger(__name__)

PIN_SUFFIX = ".pin"
_RETAINABLE = (Trust.SIGNED, Trust.UNSIGNED)


class Catalog:
    def __init__(
        self,
        target: str,
        database: str,
        storage: Storage,
        manifests: ManifestStore,
        events: Events,
        policy: RetentionPolicy,
        clock: Callable[[], datetime],
        kind: str = "database",
        *,
        prefix: str = "",
        bound: str | None = None,
    ) -> None:
        self.target = target
        self.database = database
        self.kind = kind
        self.prefix = prefix
        self.bound = bound if bound is not None else target  # the name manifests are signed for
        self.storage = storage
        self.manifests = manifests
        self.policy = policy
        self._events = events
        self._clock = clock
        self._cache: tuple[object, builtins.list[Backup]] | None = None
        self._listing = threading.Lock()

    def list(self) -> builtins.list[Backup]:
        """This target's completed backups, newest first.

        The same list object is returned while storage reports the same version, so
        callers may cache what they derive from it by identity. One caller lists at a
        time; the others wait for its result rather than list again.
        """
        version = self.storage.version()
        cached = self._cache
        if version is not None and cached is not None and cached[0] == version:
            return cached[1]
        with self._listing:
            version = self.storage.version()
            cached = self._cache
            if version is not None and cached is not None and cached[0] == version:
                return cached[1]
            return self._list(version)

    def _list(self, version: object | None) -> builtins.list[Backup]:
        objects = self.storage.list()
        listed = {obj.name: obj for obj in objects}
        self.manifests.preload(
            {
                obj.name: manifest
                for obj in objects
                if naming.is_backup_name(obj.name)
                and (manifest := listed.get(naming.manifest_name(obj.name)))
            }
        )
        backups = [
            self._to_backup(obj, listed.get(naming.manifest_name(obj.name)), listing=True)
            for obj in objects
            if naming.is_backup_name(obj.name)
        ]
        mine = sorted(
            (b for b in backups if self._mine(b)),
            key=lambda b: naming.sort_key(b.name),
            reverse=True,
        )
        self._cache = (version, mine) if version is not None else None
        return mine

    def get(self, name: str) -> Backup:
        """One of this target's backups; NotFound if it is missing or another target's."""
        handle = self.storage.open_read(naming.validate_name(name))
        handle.close()
        return self._checked(self._to_backup(handle.info))

    def open(self, name: str, actor: Actor) -> tuple[Backup, ReadHandle]:
        """Open a backup for download; the caller closes the handle."""
        with self._events.action("download", self.target, actor, name):
            handle = self.storage.open_read(naming.validate_name(name))
            try:
                backup = self._checked(self._to_backup(handle.info))
            except BaseException:
                handle.close()
                raise
            return backup, handle

    def audit_download(self, backup: Backup, actor: Actor) -> None:
        """Record a download of `backup` served by another path (a copy, read whole)."""
        with self._events.action("download", self.target, actor, backup.name):
            pass

    def grant_download(self, name: str, actor: Actor) -> Backup:
        """Record that a download link was handed out for `name`."""
        with self._events.action("download-link", self.target, actor, name):
            return self.get(name)

    def delete(self, name: str, actor: Actor) -> None:
        with self._events.action("delete", self.target, actor, name):
            backup = self.get(name)
            if backup.name in self.pinned():
                raise Conflict(f"backup {name!r} is pinned", "unpin it first")
            self.storage.delete(backup.name)
            self.manifests.delete(backup.name)
        logger.info("backup deleted target=%s backup=%s by=%s", self.target, name, actor.who)

    def pinned(self) -> set[str]:
        suffix = PIN_SUFFIX
        return {o.name[: -len(suffix)] for o in self.storage.list() if o.name.endswith(suffix)}

    def pin_said(self, name: str) -> str:
        """Who pinned a backup, and why ("" when it cannot be read)."""
        try:
            handle = self.storage.open_read(name + PIN_SUFFIX)
        except PgkeepError:
            return ""
        try:
            return handle.read(0, min(handle.info.size_bytes, 4096)).decode(errors="replace")
        finally:
            handle.close()

    def pin(self, name: str, actor: Actor, reason: str = "") -> Backup:
        """Keep a backup whatever the retention policy says (the pin says who, and why)."""
        with self._events.action("pin", self.target, actor, name):
            backup = self.get(name)
            said = f"{actor.who}: {reason}" if reason else actor.who
            self.storage.put(backup.name + PIN_SUFFIX, said.encode())
        logger.info("backup pinned target=%s backup=%s by=%s", self.target, name, actor.who)
        return backup

    def label(self, name: str, patch: Mapping[str, object], actor: Actor) -> bytes:
        """Merge `patch` into a backup's labels (core/labels.py) in its signed manifest; the
        manifest's new signed bytes (the same for every copy)."""
        with self._events.action("label", self.target, actor, name):
            backup = self.get(name)
            current = backup.manifest.labels if backup.manifest else ()
            raw = self.manifests.relabel(backup.name, labels.merge(current, patch))
        logger.info("backup labelled target=%s backup=%s by=%s", self.target, name, actor.who)
        return raw

    def unpin(self, name: str, actor: Actor) -> Backup:
        with self._events.action("unpin", self.target, actor, name):
            backup = self.get(name)
            with contextlib.suppress(NotFound):
                self.storage.delete(backup.name + PIN_SUFFIX)
        logger.info("backup unpinned target=%s backup=%s by=%s", self.target, name, actor.who)
        return backup

    def retention_plan(self) -> builtins.list[retention.Decision]:
        """What the policy would keep and delete now, and why; deletes nothing."""
        backups = self.list()
        eligible = [b for b in backups if b.trust in _RETAINABLE]
        decisions = retention.plan(eligible, self.policy, self._clock(), self.pinned())
        others = [
            retention.Decision(b, True, (f"never deleted by retention: {b.trust}",))
            for b in backups
            if b.trust not in _RETAINABLE
        ]
        return decisions + others

    def apply_retention(self, keep: str) -> None:
        """Delete what the policy deletes (never `keep`, the backup just made)."""
        for decision in self.retention_plan():
            backup = decision.backup
            if decision.keep or backup.name == keep:
                continue
            try:
                self.delete(backup.name, RETENTION)
            except PgkeepError as exc:
                logger.error("retention could not delete backup=%s error=%s", backup.name, exc)
                continue
            logger.info(
                "retention deleted target=%s backup=%s reason=%s",
                self.target,
                backup.name,
                decision.reasons[0],
            )

    def remove_partials(
        self,
        keep: frozenset[str] = frozenset(),
        older_than: float = 0.0,
        dead: frozenset[str] = frozenset(),
    ) -> builtins.list[str]:
        """Remove what interrupted creates left behind, except the work of `keep` (creates
        still running, here or on another instance) and anything younger than `older_than`
        that is not of a backup in `dead` (a stopped create's)."""
        removed = self.storage.remove_partials(keep, older_than, dead)
        for name in removed:
            logger.warning("removed partial backup left by an interrupted create: %s", name)
        horizon = self._clock() - timedelta(seconds=older_than)
        objects = self.storage.list()
        young = {o.name for o in objects if older_than and o.modified_at > horizon}
        for name in self.manifests.orphans(objects):
            backup = name[: -len(naming.MANIFEST_SUFFIX)]
            if (name in young and backup not in dead) or backup in keep:
                continue
            self.storage.delete(name)
            logger.warning("removed manifest without a backup (interrupted create): %s", name)
            removed.append(name)
        return removed

    def _mine(self, backup: Backup) -> bool:
        m = backup.manifest
        if m is None:
            return True
        if (m.kind, m.database) != (self.kind, self.database):
            return False
        return m.target is None or (m.target, m.prefix) == (self.bound, self.prefix)

    def _checked(self, backup: Backup) -> Backup:
        if not self._mine(backup):
            raise NotFound(
                f"backup {backup.name!r} not found",
                f"its manifest was made for another target or database, not {self.bound!r}",
            )
        return backup

    def _to_backup(
        self, obj: StoredObject, manifest: StoredObject | None = None, listing: bool = False
    ) -> Backup:
        """The backup `obj` is; from a listing, `manifest` is its manifest as listed (None:
        it has none), else the manifest is looked up."""
        if listing:
            read = self.manifests.load(obj.name, manifest) if manifest is not None else None
        else:
            read = self.manifests.load(obj.name)
        if read is not None and read.problem:
            logger.warning("manifest of %s: %s (%s)", obj.name, read.trust, read.problem)
        fmt, compression = naming.kind(obj.name)
        return Backup(
            obj.name,
            obj.size_bytes,
            naming.created_at(obj.name),
            obj.modified_at,
            fmt,
            compression,
            read.manifest if read else None,
            read.trust if read else Trust.MISSING,
            obj,
        )
