"""Manifests: the signed JSON sidecar `<backup name>.json` that says what a backup is.

Written atomically before the backup becomes visible; rewritten (and signed
again) when a verification is recorded, one writer per backup at a time. Parsed
manifests are cached by (size, mtime), so a list of many backups reads each
manifest once. Schema 1 manifests come from before signing: they are read, shown
as unsigned, and trusted for nothing until `pgkeep backup import --existing`.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from pgkeep import formats
from pgkeep.core import naming
from pgkeep.core.models import (
    Check,
    Compression,
    DumpFormat,
    Manifest,
    StoredObject,
    Trust,
    Verification,
)
from pgkeep.core.ports import Storage
from pgkeep.core.signing import Signer, Verdict
from pgkeep.errors import Corrupt, NotFound, PgkeepError

SCHEMA_VERSION = 2
LEGACY_SCHEMA = 1
MAX_MANIFEST_BYTES = 1024 * 1024
_VERDICTS = {
    Verdict.GOOD: Trust.SIGNED,
    Verdict.UNSIGNED: Trust.UNSIGNED,
    Verdict.UNKNOWN_KEY: Trust.UNKNOWN_KEY,
    Verdict.BAD: Trust.BAD_SIGNATURE,
}


def document(manifest: Manifest) -> dict[str, Any]:
    """The manifest as JSON values, without its signature."""
    m = manifest
    return {
        "schemaVersion": SCHEMA_VERSION,
        "filename": m.name,
        "format": str(m.format),
        "compression": str(m.compression),
        "level": m.level,
        "sizeBytes": m.size_bytes,
        "sha256": m.sha256,
        "database": m.database,
        "serverVersion": m.server_version,
        "pgDumpVersion": m.pg_dump_version,
        "startedAt": formats.iso_ms(m.started_at),
        "finishedAt": formats.iso_ms(m.finished_at),
        "durationMs": m.duration_ms,
        "createdBy": m.created_by,
        "rowCounts": m.row_counts,
        "restrictKey": m.restrict_key,
        "kind": m.kind,
        "flags": list(m.flags),
        "encryption": {"format": "age", "recipients": list(m.recipients)} if m.recipients else None,
        "verification": _verification_json(m.verification),
    }


def to_json(manifest: Manifest, signer: Signer) -> bytes:
    body = document(manifest)
    body["signature"] = signer.sign(body)
    return json.dumps(body, indent=2).encode() + b"\n"


@dataclass(frozen=True)
class Read:
    """A manifest as read: what it says when that may be used, and whether to trust it.

    `claimed` is what a readable manifest says whatever its signature; only an
    operator's import looks at it when the manifest is not one to use.
    """

    manifest: Manifest | None
    trust: Trust
    problem: str = ""
    claimed: Manifest | None = None


def from_json(data: bytes, name: str, signer: Signer) -> Read:
    """Parse and check a manifest for the backup `name` (the name asked for, never its own)."""
    try:
        d = json.loads(data)
        if not isinstance(d, dict):
            raise TypeError("not a JSON object")
        version = d.get("schemaVersion")
        if version not in (SCHEMA_VERSION, LEGACY_SCHEMA):
            raise ValueError(f"unknown schema {str(version)[:20]!r}")
        manifest = _manifest(d)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        return Read(None, Trust.UNREADABLE, str(exc)[:200])
    signature = d.pop("signature", None)
    verdict = Verdict.UNSIGNED if version == LEGACY_SCHEMA else signer.check(d, signature)
    trust = _VERDICTS[verdict]
    if manifest.name != name and trust is not Trust.BAD_SIGNATURE:
        return Read(None, Trust.OTHER_BACKUP, f"it names {manifest.name[:80]!a}")
    if trust not in (Trust.SIGNED, Trust.UNSIGNED):
        return Read(None, trust, claimed=manifest)
    return Read(manifest, trust, claimed=manifest)


def _manifest(d: dict[str, Any]) -> Manifest:
    counts = d["rowCounts"]
    restrict = d.get("restrictKey")
    return Manifest(
        name=str(d["filename"]),
        format=DumpFormat(d["format"]),
        compression=Compression(d["compression"]),
        level=int(d["level"]),
        size_bytes=int(d["sizeBytes"]),
        sha256=str(d["sha256"]),
        database=str(d["database"]),
        server_version=str(d["serverVersion"]),
        pg_dump_version=str(d["pgDumpVersion"]),
        started_at=_time(d["startedAt"]),
        finished_at=_time(d["finishedAt"]),
        created_by=str(d["createdBy"]),
        row_counts=None if counts is None else {str(k): int(v) for k, v in counts.items()},
        verification=_verification(d.get("verification")),
        restrict_key=None if restrict is None else str(restrict),
        kind=str(d.get("kind", "database")),
        flags=tuple(str(f) for f in d.get("flags", ())),
        recipients=_recipients(d.get("encryption")),
    )


def _recipients(encryption: Any) -> tuple[str, ...]:
    if encryption is None:
        return ()
    if encryption.get("format") != "age" or not encryption.get("recipients"):
        raise ValueError("unknown encryption")
    return tuple(str(r) for r in encryption["recipients"])


def _verification_json(v: Verification | None) -> dict[str, Any] | None:
    if v is None:
        return None
    checks = [{"name": c.name, "ok": c.ok, "details": c.details} for c in v.checks]
    return {"verified": v.verified, "verifiedAt": formats.iso_ms(v.verified_at), "checks": checks}


def _verification(d: dict[str, Any] | None) -> Verification | None:
    if d is None:
        return None
    checks = tuple(Check(str(c["name"]), bool(c["ok"]), str(c["details"])) for c in d["checks"])
    return Verification(bool(d["verified"]), _time(d["verifiedAt"]), checks)


def _time(text: str) -> datetime:
    moment = datetime.fromisoformat(text)  # Python 3.11 reads a trailing Z
    if moment.tzinfo is None:
        raise ValueError(f"time without a zone: {text[:40]!r}")
    return moment


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
