"""Manifests: the JSON sidecar `<backup name>.json` that says what a backup is, and its store.

Written atomically before the backup becomes visible; rewritten atomically when
a verification is recorded. Parsed manifests are cached by (size, mtime), so a
list of many backups reads each manifest once.
"""

from __future__ import annotations

import contextlib
import json
import threading
from dataclasses import replace
from datetime import datetime
from typing import Any

from pgkeep import formats
from pgkeep.core import naming
from pgkeep.core.models import Check, Compression, DumpFormat, Manifest, StoredObject, Verification
from pgkeep.core.ports import Storage
from pgkeep.errors import Corrupt, NotFound

SCHEMA_VERSION = 1
MAX_MANIFEST_BYTES = 16 * 1024 * 1024


def to_json(manifest: Manifest) -> bytes:
    m = manifest
    document: dict[str, Any] = {
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
        "verification": _verification_json(m.verification),
    }
    return json.dumps(document, indent=2, sort_keys=False).encode() + b"\n"


def from_json(data: bytes, name: str) -> Manifest:
    try:
        d = json.loads(data)
        if d.get("schemaVersion") != SCHEMA_VERSION:
            raise Corrupt(f"manifest of {name!r} has unknown schema {d.get('schemaVersion')!r}")
        return Manifest(
            name=d["filename"],
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
            row_counts=None
            if d["rowCounts"] is None
            else {k: int(v) for k, v in d["rowCounts"].items()},
            verification=_verification(d.get("verification")),
        )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise Corrupt(f"manifest of {name!r} is not readable", str(exc)) from None


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
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


class ManifestStore:
    def __init__(self, storage: Storage) -> None:
        self._storage = storage
        self._cache: dict[str, tuple[int, datetime, Manifest]] = {}
        self._lock = threading.Lock()

    def load(self, backup_name: str, obj: StoredObject | None = None) -> Manifest | None:
        """The manifest of a backup, or None when it has none."""
        name = naming.manifest_name(backup_name)
        try:
            handle = self._storage.open_read(name)
        except NotFound:
            return None
        try:
            info = handle.info
            with self._lock:
                cached = self._cache.get(name)
            if cached and cached[:2] == (info.size_bytes, info.modified_at):
                return cached[2]
            if info.size_bytes > MAX_MANIFEST_BYTES:
                raise Corrupt(f"manifest of {backup_name!r} is too large")
            manifest = from_json(b"".join(handle.iter_range(0, info.size_bytes)), backup_name)
        finally:
            handle.close()
        with self._lock:
            self._cache[name] = (info.size_bytes, info.modified_at, manifest)
        return manifest

    def save(self, manifest: Manifest) -> None:
        self._storage.put(naming.manifest_name(manifest.name), to_json(manifest))

    def record(self, manifest: Manifest, verification: Verification) -> Manifest:
        updated = replace(manifest, verification=verification)
        self.save(updated)
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
