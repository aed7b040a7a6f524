"""A manifest as JSON: written for people to read, signed over its canonical form, and read
back with every way it may not be trusted told apart (core/manifests.py keeps the store).

Schema 3 binds the target and store prefix into the signature and records what restores
need; schema 2 came before that; schema 1 is 0.1.0's, from before signing, and counts as
such only with exactly the keys 0.1.0 wrote.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pgkeep import formats
from pgkeep.core import restore_plan
from pgkeep.core.models import (
    Check,
    Compression,
    Drift,
    DumpFormat,
    Manifest,
    Rehearsal,
    TableDrift,
    Trust,
    Verification,
)
from pgkeep.core.signing import Signer, Verdict

SCHEMA_VERSION = 3
UNBOUND_SCHEMA = 2
LEGACY_SCHEMA = 1
# Exactly what 0.1.0 wrote (schema 1, before signing).
LEGACY_KEYS = frozenset(
    {
        "schemaVersion",
        "filename",
        "format",
        "compression",
        "level",
        "sizeBytes",
        "sha256",
        "database",
        "serverVersion",
        "pgDumpVersion",
        "startedAt",
        "finishedAt",
        "durationMs",
        "createdBy",
        "rowCounts",
        "verification",
    }
)
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
        "target": m.target,
        "prefix": m.prefix,
        "serverId": m.server_id,
        "databaseOwner": m.database_owner,
        "owners": list(m.owners),
        "grantees": list(m.grantees),
        "extensions": dict(m.extensions),
        "restorePlan": restore_plan.to_json(m.plan) if m.plan is not None else None,
        "origin": m.origin,
        "drift": drift_json(m.drift),
        "labels": dict(m.labels),
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
        if version not in (SCHEMA_VERSION, UNBOUND_SCHEMA, LEGACY_SCHEMA):
            raise ValueError(f"unknown schema {str(version)[:20]!r}")
        manifest = _manifest(d)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        return Read(None, Trust.UNREADABLE, str(exc)[:200])
    if version == LEGACY_SCHEMA and set(d) != LEGACY_KEYS:
        extra = sorted(set(d) - LEGACY_KEYS)[:3] or sorted(LEGACY_KEYS - set(d))[:3]
        return Read(None, Trust.TAMPERED, f"schema 1 with keys 0.1.0 never wrote: {extra}")
    signature = d.pop("signature", None)
    verdict = Verdict.UNSIGNED if version == LEGACY_SCHEMA else signer.check(d, signature)
    if verdict is Verdict.UNSIGNED and version != LEGACY_SCHEMA:
        verdict = Verdict.BAD  # signing began with schema 2: a later one without is edited
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
        target=_optional(d.get("target")),
        prefix=_optional(d.get("prefix")),
        server_id=str(d.get("serverId") or ""),
        database_owner=str(d.get("databaseOwner") or ""),
        owners=tuple(str(o) for o in d.get("owners") or ()),
        grantees=tuple(str(g) for g in d.get("grantees") or ()),
        extensions=tuple((str(k), str(v)) for k, v in (d.get("extensions") or {}).items()),
        plan=_plan(d.get("restorePlan")),
        origin=str(d.get("origin") or "dump"),
        drift=_drift(d.get("drift")),
        labels=tuple(sorted((str(k), str(v)) for k, v in (d.get("labels") or {}).items())),
    )


def _plan(value: Any) -> restore_plan.Plan | None:
    """The recorded plan; None for none, or one of an earlier version (planned again)."""
    if not value:
        return None
    try:
        return restore_plan.from_json(value)
    except restore_plan.OldPlan:
        return None


def _optional(value: Any) -> str | None:
    return None if value is None else str(value)


def _recipients(encryption: Any) -> tuple[str, ...]:
    if encryption is None:
        return ()
    if encryption.get("format") != "age" or not encryption.get("recipients"):
        raise ValueError("unknown encryption")
    return tuple(str(r) for r in encryption["recipients"])


def drift_json(drift: Drift | None) -> dict[str, Any] | None:
    """A backup's drift as the manifest and the API write it."""
    if drift is None:
        return None
    return {
        "previous": drift.previous,
        "reasons": list(drift.reasons()),
        "tables": [{"table": t.table, "before": t.before, "after": t.after} for t in drift.tables],
        "sizeBefore": drift.size_before,
        "sizeAfter": drift.size_after,
    }


def _drift(d: dict[str, Any] | None) -> Drift | None:
    if d is None:
        return None
    tables = tuple(
        TableDrift(str(t["table"]), int(t["before"]), _count(t["after"])) for t in d["tables"]
    )
    size = _count(d.get("sizeBefore")), _count(d.get("sizeAfter"))
    return Drift(str(d["previous"]), tables, *size)


def _count(value: Any) -> int | None:
    return None if value is None else int(value)


def _verification_json(v: Verification | None) -> dict[str, Any] | None:
    """`verified` null: inconclusive; `rehearsals` only when there were some (as before)."""
    if v is None:
        return None
    checks = [{"name": c.name, "ok": c.ok, "details": c.details} for c in v.checks]
    found = {"verified": v.verified, "verifiedAt": formats.iso_ms(v.verified_at), "checks": checks}
    if v.rehearsals:
        found["rehearsals"] = rehearsals_json(v.rehearsals)
    return found


def rehearsals_json(rehearsals: tuple[Rehearsal, ...]) -> list[dict[str, Any]]:
    """Rehearsals as the manifest and the API write them."""
    return [
        {"server": r.server, "major": r.major, "ok": r.ok, "details": r.details} for r in rehearsals
    ]


def _verification(d: dict[str, Any] | None) -> Verification | None:
    if d is None:
        return None
    checks = tuple(Check(str(c["name"]), bool(c["ok"]), str(c["details"])) for c in d["checks"])
    rehearsals = tuple(
        Rehearsal(str(r["server"]), int(r["major"]), bool(r["ok"]), str(r["details"]))
        for r in d.get("rehearsals") or ()
    )
    verified = None if d["verified"] is None else bool(d["verified"])
    return Verification(verified, _time(d["verifiedAt"]), checks, rehearsals=rehearsals)


def _time(text: str) -> datetime:
    moment = datetime.fromisoformat(text)  # Python 3.11 reads a trailing Z
    if moment.tzinfo is None:
        raise ValueError(f"time without a zone: {text[:40]!r}")
    return moment
