"""Whether a verify server can test-restore a backup at all: what the backup needs (its
extensions, the roles owning its objects or named by its grants, its source's major, from
the signed manifest)
against what the server offers, and which server errors are the server's, not the
backup's (by SQLSTATE). A finding here makes a verification inconclusive, naming what
is missing and how to fix it: it never counts against the backup.

Only what the manifest records is checked before the restore (a backup made before
grantees were recorded names its owners only); a role named only in a policy, say, is
found by the restore itself (SQLSTATE 42704) and classified the same way.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from pgkeep.core.models import Backup, Check

ENVIRONMENT = "environment"  # the check that names what the verify server lacks
# Errors that say the server lacks something the backup uses, not that the backup is bad.
SQLSTATES = {
    "42704": "undefined object",
    "58P01": "undefined file",
    "0A000": "feature not supported",
}
_SERVER_ERROR = re.compile(r"ERROR:\s+([0-9A-Z]{5}): ([^\n]*)")
_MAJOR = re.compile(r"[0-9]+")


@dataclass(frozen=True)
class Needs:
    """What a backup needs of a server it is restored into (from its manifest)."""

    extensions: tuple[tuple[str, str], ...] = ()  # (name, version at the source)
    roles: tuple[str, ...] = ()
    major: int = 0  # the source server's major; 0 when unknown


@dataclass(frozen=True)
class Offers:
    """What a server has (postgres/catalog.py asks it)."""

    server: str  # host:port
    major: int
    extensions: dict[str, tuple[str, ...]]  # name → versions available
    roles: frozenset[str]  # of the roles asked about, those that exist


def needs_of(backup: Backup) -> Needs:
    m = backup.manifest
    if m is None:
        return Needs()
    roles = sorted({r for r in (*m.owners, *m.grantees) if r and not r.startswith("pg_")})
    found = _MAJOR.match(m.server_version)
    return Needs(m.extensions, tuple(roles), int(found[0]) if found else 0)


def findings(needs: Needs, offers: Offers) -> list[str]:
    """What the server lacks, each with how to fix it; empty when nothing is missing."""
    where = f"the verify server {offers.server}"
    found = [
        f"extension {name} is not available on {where}: install {name}"
        f"{f' (version {version})' if version else ''} on the verify server"
        for name, version in needs.extensions
        if name not in offers.extensions
    ]
    found += [
        f"role {role} does not exist on {where}: create role {role} there "
        f"(CREATE ROLE {role} NOLOGIN, or restore the globals backup)"
        for role in needs.roles
        if role not in offers.roles
    ]
    if needs.major and offers.major and offers.major < needs.major:
        found.append(
            f"{where} runs PostgreSQL {offers.major}, older than the source's {needs.major}: "
            f"verify on PostgreSQL {needs.major} or newer"
        )
    return found


def version_notes(needs: Needs, offers: Offers) -> list[str]:
    """Extensions whose source version the server cannot install (the dump installs the
    server's default version: noted, never a finding)."""
    return [
        f"{name} {version} is not installable on {offers.server} (it has "
        f"{', '.join(offers.extensions[name]) or 'none'})"
        for name, version in needs.extensions
        if name in offers.extensions and version and version not in offers.extensions[name]
    ]


def environmental(text: str) -> str | None:
    """The server's first error in `text` (psql and pg_restore output, verbose), when its
    SQLSTATE says the server lacks something; None for any other error."""
    match = _SERVER_ERROR.search(text)
    if match is None or match[1] not in SQLSTATES:
        return None
    return f"{match[2].strip()} (SQLSTATE {match[1]}, {SQLSTATES[match[1]]})"


def verified(checks: Iterable[Check]) -> bool | None:
    """False when a check of the backup failed; None (inconclusive) when only the
    environment did; True when everything passed."""
    failed = [c for c in checks if not c.ok]
    if any(c.name != ENVIRONMENT for c in failed):
        return False
    return None if failed else True
