"""Manifests: the signed JSON sidecar `<backup name>.json` that says what a backup is.

Written atomically before the backup becomes visible; rewritten (and signed
again) when a verification is recorded, one writer per backup at a time. Parsed
manifests are cached by (size, mtime), so a list of many backups reads each
manifest once. Schema 3 binds the target and store prefix into the signature and
records what restores need (the plan of a plain dump, owners, extensions);
schema 2 manifests came before that and stay good on their own target. Schema 1
manifests come from before signing (0.1.0): read, shown as unsigned, and trusted for
nothing until `pgkeep backup import --existing`; one with any key 0.1.0 did not
write (a signature, a restrict key) was edited, and is never imported.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime

from pgkeep.core import naming
from pgkeep.core.labels import Labels
from pgkeep.core.manifest_json import (
    LEGACY_KEYS,
    MAX_MANIFEST_BYTES,
    SCHEMA_VERSION,
    Read,
    document,
    from_json,
    to_json,
)
from pgkeep.core.models import Manifest, StoredObject, Trust, Verification
from pgkeep.core.ports import Storage, Writer
from pgkeep.core.signing import Signer
from pgkeep.errors import Conflict, Corrupt, NotFound, PgkeepError

__all__ = [
    "LEGACY_KEYS",
    "MAX_MANIFEST_BYTES",
    "SCHEMA_VERSION",
    "ManifestStore",
    "Read",
    "document",
    "from_json",
    "to_json",
]


def _key(info: StoredObject) -> tuple[tuple[int, datetime], str]:
    """What says a stored manifest is the one cached: size and time, and the store's tag."""
    return (info.size_bytes, info.modified_at), info.etag


PRELOAD_MIN = 8  # fewer uncached manifests than this are read one by one, as listed
PRELOAD_THREADS = 16


class ManifestStore:
    """Reads, writes and caches the manifests in one storage."""

    def __init__(self, storage: Storage, signer: Signer) -> None:
        self._storage = storage
        self.signer = signer
        self._cache: dict[str, tuple[tuple[int, datetime], str, Read]] = {}
        self._lock = threading.Lock()
        self._writing: dict[str, threading.Lock] = {}

    def load(self, backup_name: str, listed: StoredObject | None = None) -> Read:
        """The manifest of a backup as read and checked; Trust.MISSING when it has none.

        With `listed` (the manifest as a listing showed it) a cached read of the same
        object is answered without opening it: no request per manifest per list.
        """
        name = naming.manifest_name(backup_name)
        if listed is not None:
            with self._lock:
                cached = self._cache.get(name)
            if cached and cached[:2] == _key(listed):
                return cached[2]
        try:
            handle = self._storage.open_read(name, listed)
        except NotFound:
            return Read(None, Trust.MISSING)
        except PgkeepError as exc:
            return Read(None, Trust.UNREADABLE, exc.message)
        try:
            info = handle.info
            with self._lock:
                cached = self._cache.get(name)
            if cached and cached[:2] == _key(info):
                return cached[2]
            if info.size_bytes > MAX_MANIFEST_BYTES:
                return Read(None, Trust.UNREADABLE, "larger than any manifest pgkeep writes")
            data = b"".join(handle.iter_range(0, info.size_bytes))
        except PgkeepError as exc:
            return Read(None, Trust.UNREADABLE, exc.message)
        finally:
            handle.close()
        read = from_json(data, backup_name, self.signer)
        with self._lock:
            self._cache[name] = (*_key(info), read)
        return read

    def preload(self, listed: dict[str, StoredObject]) -> None:
        """Read the manifests (backup name → manifest as listed) not cached yet, several at
        once: a store where each read is a request (S3) lists 10,000 new backups in
        seconds, not minutes. What each read finds is cached as `load` caches it."""
        with self._lock:
            missing = [
                (name, obj)
                for name, obj in listed.items()
                if (c := self._cache.get(naming.manifest_name(name))) is None or c[:2] != _key(obj)
            ]
        if len(missing) < PRELOAD_MIN:
            return
        with ThreadPoolExecutor(PRELOAD_THREADS, thread_name_prefix="manifests") as pool:
            list(pool.map(lambda item: self.load(*item), missing))

    def save(self, backup_name: str, manifest: Manifest) -> None:
        """Sign and store; the object's name comes from the caller's backup name."""
        if manifest.name != backup_name:
            raise Corrupt(f"manifest for {manifest.name!r} cannot be saved as {backup_name!r}")
        self._storage.put(naming.manifest_name(backup_name), to_json(manifest, self.signer))

    def publish(
        self, backup_name: str, writer: Writer, manifest: Manifest | None, raw: bytes = b""
    ) -> None:
        """The one way a backup appears (create, import, copy): its manifest first (signed
        here, or `raw`, a copy's signed bytes), then the backup's commit; a commit that fails
        takes the manifest back, so no backup is ever listed without one, nor one half-made."""
        if manifest is not None:
            self.save(backup_name, manifest)
        else:
            self._storage.put(naming.manifest_name(backup_name), raw)
        try:
            writer.commit()
        except BaseException:
            self.delete(backup_name)
            raise

    @contextlib.contextmanager
    def updating(self, backup_name: str) -> Iterator[None]:
        """Serialize read-modify-write of one backup's manifest (verify records, imports)."""
        with self._lock:
            lock = self._writing.setdefault(backup_name, threading.Lock())
        with lock:
            yield

    def record(self, backup_name: str, verification: Verification) -> Manifest | None:
        """Add a verification to a signed manifest; None (nothing written) when not signed."""
        with self.updating(backup_name):
            read = self.load(backup_name)
            if read.trust is not Trust.SIGNED or read.manifest is None:
                return None
            updated = replace(read.manifest, verification=verification)
            self.save(backup_name, updated)
            return updated

    def relabel(self, backup_name: str, labels: Labels) -> bytes:
        """Give a signed manifest new labels; its signed bytes as stored (for the copies).
        Conflict when the manifest is not signed (an unsigned one is never rewritten)."""
        with self.updating(backup_name):
            read = self.load(backup_name)
            if read.trust is not Trust.SIGNED or read.manifest is None:
                raise Conflict(
                    f"backup {backup_name!r} has no signed manifest to label",
                    f"its manifest: {read.trust}",
                )
            raw = to_json(replace(read.manifest, labels=labels), self.signer)
            self.put_raw(backup_name, raw)
            return raw

    def put_raw(self, backup_name: str, raw: bytes) -> None:
        """Store a manifest's signed bytes as written for the primary (a copy's, relabelled)."""
        name = naming.manifest_name(backup_name)
        self._storage.put(name, raw)
        with self._lock:
            self._cache.pop(name, None)  # a label of the same length may keep size and time

    def delete(self, backup_name: str) -> None:
        with contextlib.suppress(NotFound):
            self._storage.delete(naming.manifest_name(backup_name))
        with self._lock:
            self._cache.pop(naming.manifest_name(backup_name), None)

    def orphans(self, objects: list[StoredObject]) -> list[str]:
        """Manifests whose backup does not exist (a create died between the two writes)."""
        names = {obj.name for obj in objects}
        suffix = naming.MANIFEST_SUFFIX
        return sorted(
            n
            for n in names
            if n.endswith(suffix)
            and naming.is_backup_name(n[: -len(suffix)])
            and n[: -len(suffix)] not in names
        )
