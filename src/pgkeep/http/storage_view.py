"""Every store at a glance (GET /api/backup/storage): what each holds per target, and which
signed backups of the primary a copy store is missing. Each store is read on its own: one
that is down is `ok: false` with its cause, and the others still answer."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pgkeep.http.overview import PRIMARY, StoreRead, read_stores
from pgkeep.runtime import Runtime


@dataclass
class _Store:
    name: str
    kind: str
    role: str
    errors: list[str] = field(default_factory=list)
    targets: list[dict[str, Any]] = field(default_factory=list)
    missing: list[dict[str, str]] = field(default_factory=list)

    def json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "role": self.role,
            "ok": not self.errors,
            "error": self.errors[0] if self.errors else None,
            "bytes": sum(t["bytes"] for t in self.targets),
            "backups": sum(t["backups"] for t in self.targets),
            "targets": self.targets,
            "missing": self.missing,
        }


def stores(
    runtime: Runtime, visible: Callable[[str], bool] = lambda _: True
) -> list[dict[str, Any]]:
    """The primary store (every target's own), then each copy store, by name: as much of
    them as the targets the caller may see."""
    found: dict[str, _Store] = {}
    for name, service in sorted(runtime.services.items()):
        if not visible(name):
            continue
        reads = read_stores(service)
        primary = reads[0]
        for read in reads:
            role = "primary" if read.store == PRIMARY else "copy"
            store = found.setdefault(read.store, _Store(read.store, _kind(read), role))
            if read.error is not None:
                store.errors.append(f"{name}: {read.error}")
            backups = read.backups or []
            store.targets.append(
                {
                    "target": name,
                    "bytes": sum(b.size_bytes for b in backups),
                    "backups": len(backups),
                    "ok": read.error is None,
                    "error": read.error,
                }
            )
            if role == "copy" and None not in (primary.backups, read.backups):
                store.missing.extend(_missing(name, primary, read))
    ordered = sorted(found.values(), key=lambda s: (s.role != "primary", s.name))
    return [s.json() for s in ordered]


def _missing(target: str, primary: StoreRead, copy: StoreRead) -> list[dict[str, str]]:
    """The signed backups of the primary that the copy store does not hold."""
    held = {b.name for b in copy.backups or []}
    return [
        {"target": target, "filename": b.name}
        for b in primary.backups or []
        if b.signed and b.name not in held
    ]


def _kind(read: StoreRead) -> str:
    return "s3" if read.where.startswith("s3://") else "local"
