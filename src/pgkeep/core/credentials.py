"""Who a request speaks for, and API keys' records as stored: scopes, targets, expiry, and
the ports where the records and failed attempts live (core.apikeys uses them)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from pgkeep.errors import Forbidden

SCOPES = (
    "backups:read",
    "backups:download",
    "backups:create",
    "backups:verify",
    "backups:restore",
    "backups:delete",
    "backups:pin",
    "audit:read",
    "keys:manage",
)


@dataclass(frozen=True)
class ApiKey:
    """A key's record as stored: never its secret, only the secret's digest."""

    id: str
    name: str
    digest: str
    scopes: tuple[str, ...]
    targets: tuple[str, ...] | None  # None: every target
    owner: str  # the OWNER it acts for
    created_at: datetime
    expires_at: datetime | None
    mac: str = ""
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None
    parent: str | None = None  # the key that minted it: revoking that one revokes this one

    def signed_fields(self) -> dict[str, object]:
        parent = {} if self.parent is None else {"parent": self.parent}
        return {
            **parent,
            "id": self.id,
            "name": self.name,
            "digest": self.digest,
            "scopes": list(self.scopes),
            "targets": None if self.targets is None else list(self.targets),
            "owner": self.owner,
            "createdAt": self.created_at.isoformat(),
            "expiresAt": None if self.expires_at is None else self.expires_at.isoformat(),
        }


@dataclass(frozen=True)
class Credential:
    """Who a request speaks for: an OWNER token (every right) or a key (its scopes, targets)."""

    kind: str  # "owner" or "key"
    sub: str  # the token's subject, or the key's owner
    scopes: frozenset[str] = frozenset(SCOPES)
    targets: frozenset[str] | None = None
    name: str = ""
    key_id: str = ""
    expires_at: datetime | None = None

    def require(self, scope: str) -> None:
        if scope not in self.scopes:
            raise Forbidden("access denied", f"this API key lacks the scope {scope!r}")

    def allows(self, target: str) -> bool:
        return self.targets is None or target in self.targets

    def require_target(self, target: str) -> None:
        """403 for a target outside the key's, whether or not it exists (never said which)."""
        if not self.allows(target):
            raise Forbidden("access denied", "this API key is not for that target")


class KeyStore(Protocol):
    def add(self, key: ApiKey) -> None: ...

    def get(self, key_id: str) -> ApiKey | None: ...

    def list(self) -> list[ApiKey]: ...

    def revoke(self, key_id: str, at: datetime) -> bool:
        """False if there is no such key."""
        ...

    def touch(self, key_id: str, at: datetime) -> None:
        """Note the key's use (`lastUsedAt`)."""
        ...


class Attempts(Protocol):
    """Failed key attempts, counted where every instance sees them."""

    def counts(self, address: str, key_id: str, since: datetime) -> tuple[int, int, int]:
        """Failures since `since`: from this address, for this key id, and for this key id
        from this address."""
        ...

    def fail(self, address: str, key_id: str, at: datetime) -> None: ...


def record_of(row: Mapping[str, Any]) -> ApiKey:
    """A key's record from a stored row (scopes and targets as JSON text)."""
    targets = json.loads(row["targets"])
    return ApiKey(
        id=str(row["id"]),
        name=str(row["name"]),
        digest=str(row["digest"]),
        scopes=tuple(json.loads(row["scopes"])),
        targets=None if targets is None else tuple(targets),
        owner=str(row["owner"]),
        created_at=_when(row["created_at"]),
        expires_at=_when(row["expires_at"]) if row["expires_at"] else None,
        mac=str(row["mac"]),
        revoked_at=_when(row["revoked_at"]) if row["revoked_at"] else None,
        last_used_at=_when(row["last_used_at"]) if row["last_used_at"] else None,
        parent=str(row["parent"]) if row["parent"] else None,
    )


def row_of(key: ApiKey) -> tuple[object, ...]:
    """A new key's row: id, name, digest, scopes, targets, owner, created_at, expires_at, mac,
    parent."""
    targets = None if key.targets is None else list(key.targets)
    return (
        key.id,
        key.name,
        key.digest,
        json.dumps(list(key.scopes)),
        json.dumps(targets),
        key.owner,
        key.created_at,
        key.expires_at,
        key.mac,
        key.parent,
    )


def _when(value: object) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


def credential_of(record: ApiKey) -> Credential:
    targets = None if record.targets is None else frozenset(record.targets)
    return Credential(
        "key",
        record.owner,
        frozenset(record.scopes),
        targets,
        record.name,
        record.id,
        record.expires_at,
    )
