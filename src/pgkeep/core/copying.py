"""Copies: after a backup of a target succeeds, the same bytes go to each copy store.

A copy streams from the primary store, checks the sha256 against the signed
manifest, writes the manifest first and then publishes the object, as a create
does. A copy that fails is retried with backoff and alerted (an event `copy`,
failed); it never touches the primary. A copy still failed after its attempts is
tried again after the next backup of the target succeeds (and alerted again if
it fails again), so a store that was down for a night catches up by itself. Each
store applies its own retention afterwards, and deleting from one store never
deletes from another.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from pgkeep.core import deleting, naming
from pgkeep.core.catalog import Catalog
from pgkeep.core.events import Actor, Event, Events
from pgkeep.core.models import Backup
from pgkeep.core.ports import Storage
from pgkeep.errors import Corrupt, NotFound, PgkeepError, Untrusted

logger = logging.getLogger(__name__)
COPIER = Actor("copier", "copies")
UNREADABLE_SECONDS = 5.0


@dataclass(frozen=True)
class CopyStatus:
    store: str
    present: bool | None  # the object is in that store; None: the store cannot be read now
    verified: bool  # with its signed manifest, whose size it matches


class Copier:
    def __init__(
        self,
        primary: Catalog,
        copies: list[tuple[str, Catalog]],
        events: Events,
        *,
        attempts: int = 5,
        backoff: float = 5.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.primary = primary
        self.copies = copies
        self._events = events
        self._attempts = attempts
        self._backoff = backoff
        self._sleep = sleep
        self._owed: dict[str, set[str]] = {store: set() for store, _ in copies}
        self._lock = threading.Lock()  # one round of copies at a time
        self._clock = clock
        self._unreadable_until: dict[str, float] = {}
        self._indexes: dict[str, tuple[list[Backup], dict[str, Backup]]] = {}
        self._deleted: set[str] = set()  # deleted meanwhile: not copied, or taken back
        self._last_cancelled = ""

    def cancel(self, name: str) -> None:
        """A backup being deleted: its pending copies are dropped, and one under way is
        removed from its store once it lands (a copy under way in another process: its
        tombstone says so). `cancel("")` takes back the last cancel (the delete was refused)."""
        if not name:
            self._deleted.discard(self._last_cancelled)
            return
        self._last_cancelled = name
        self._deleted.add(name)
        for owed in self._owed.values():
            owed.discard(name)

    def on_event(self, event: Event) -> None:
        """A listener: a create of this target that succeeded starts its copies."""
        if (
            self.copies
            and event.target == self.primary.target
            and (event.action, event.outcome) == ("create", "succeeded")
            and event.filename
        ):
            thread = threading.Thread(target=self.copy_all, args=(event.filename,), daemon=True)
            thread.start()

    def copy_all(self, name: str) -> None:
        with self._lock:
            for store, catalog in self.copies:
                owed = self._owed[store]
                for earlier in sorted(owed - {name}, key=naming.sort_key):
                    if self._still_there(earlier):
                        self._with_retries(earlier, store, catalog)
                    else:
                        owed.discard(earlier)
                self._with_retries(name, store, catalog)

    def owed(self) -> dict[str, list[str]]:
        """Per store, the backups whose copy failed and will be tried again."""
        return {store: sorted(names) for store, names in self._owed.items()}

    def _still_there(self, name: str) -> bool:
        try:
            self.primary.get(name)
        except NotFound:  # deleted or aged out meanwhile: nothing is owed any more
            return False
        except PgkeepError:
            return True  # the copy attempt will say what is wrong
        return True

    def _with_retries(self, name: str, store: str, catalog: Catalog) -> None:
        if name in self._deleted:
            return
        error = ""
        for attempt in range(1, self._attempts + 1):
            try:
                self.copy(name, catalog)
            except PgkeepError as exc:
                error = f"{exc.message} {exc.details}".strip()
                logger.warning(
                    "copy of %s to %s failed (attempt %d/%d): %s",
                    name,
                    store,
                    attempt,
                    self._attempts,
                    error,
                )
                if attempt < self._attempts:
                    self._sleep(self._backoff * 2 ** (attempt - 1))
                continue
            self._owed[store].discard(name)
            self._unreadable_until.pop(store, None)  # it answered: list it again
            if name in self._deleted or deleting.tombstoned(self.primary, name):
                # deleted while it was copied (here, or by another process): taken back
                with contextlib.suppress(PgkeepError):
                    catalog.delete(name, COPIER)
                return
            self._emit(name, store, "succeeded", "")
            logger.info("copied target=%s backup=%s to=%s", self.primary.target, name, store)
            return
        self._owed[store].add(name)
        self._emit(name, store, "failed", error)

    def copy(self, name: str, catalog: Catalog) -> None:
        """One copy, checked against the manifest; then the store's own retention."""
        backup = self.primary.get(name)
        if not backup.signed or backup.manifest is None:
            raise Untrusted(f"backup {name!r} is not signed: it is not copied")
        manifest_name = naming.manifest_name(name)
        source = self.primary.storage
        raw = _read(source, manifest_name)
        handle = source.open_read(name)
        digest = hashlib.sha256()
        try:
            with catalog.storage.open_write(name) as writer:
                for chunk in handle.iter_range(0, handle.info.size_bytes):
                    digest.update(chunk)
                    writer.write(chunk)
                if digest.hexdigest() != backup.manifest.sha256:
                    raise Corrupt(
                        f"backup {name!r} does not match its manifest: not copied",
                        f"sha256 is {digest.hexdigest()}",
                    )
                catalog.manifests.publish(name, writer, None, raw)
        finally:
            handle.close()
        catalog.apply_retention(keep=name)

    def listings(self) -> list[list[Backup] | None]:
        """Each copy store's backups, in the order of `copies`; None for a store that cannot
        be read now (remembered for a few seconds, so a store that is down costs a list
        request one failed attempt, not one per backup or per request)."""
        found: list[list[Backup] | None] = []
        now = self._clock()
        for store, catalog in self.copies:
            if now < self._unreadable_until.get(store, 0.0):
                found.append(None)
                continue
            try:
                found.append(catalog.list())
            except PgkeepError as exc:
                logger.warning("cannot list the copies in %s: %s", store, exc.message)
                self._unreadable_until[store] = now + UNREADABLE_SECONDS
                found.append(None)
        return found

    def status(
        self, name: str, listings: list[list[Backup] | None] | None = None
    ) -> list[CopyStatus]:
        """Where the copies of `name` are, from `listings` (one call of it for many names)."""
        listings = self.listings() if listings is None else listings
        found = []
        for (store, _), backups in zip(self.copies, listings, strict=True):
            copy = self._by_name(store, backups).get(name) if backups is not None else None
            verified = bool(
                copy
                and copy.signed
                and copy.manifest
                and copy.manifest.size_bytes == copy.size_bytes
            )
            present = None if backups is None else copy is not None
            found.append(CopyStatus(store, present, verified))
        return found

    def _by_name(self, store: str, backups: list[Backup]) -> dict[str, Backup]:
        """An index of a listing, kept while the catalog hands out the same list."""
        cached = self._indexes.get(store)
        if cached is None or cached[0] is not backups:
            cached = self._indexes[store] = (backups, {b.name: b for b in backups})
        return cached[1]

    def _emit(self, name: str, store: str, outcome: str, error: str) -> None:
        actor = COPIER
        event = Event(
            "copy", outcome, self.primary.target, self._events.now(), actor, name, None, error
        )
        self._events.emit(event)


def _read(storage: Storage, name: str) -> bytes:
    handle = storage.open_read(name)
    try:
        return b"".join(handle.iter_range(0, handle.info.size_bytes))
    finally:
        handle.close()
