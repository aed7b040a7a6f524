"""The domain's value objects: backups, their options and manifests, verify and restore results."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from pgkeep.core.restore_plan import Plan
from pgkeep.errors import InvalidInput


class DumpFormat(StrEnum):
    PLAIN = "plain"
    CUSTOM = "custom"


class Compression(StrEnum):
    NONE = "none"
    GZIP = "gzip"
    ZSTD = "zstd"


# Plain dumps are compressed by pgkeep on the stream; custom archives compress
# their table data internally (pg_dump's own gzip), so they are never wrapped
# and cannot use zstd (most pg_restore builds here lack it).
ALLOWED = frozenset(
    {
        (DumpFormat.PLAIN, Compression.NONE),
        (DumpFormat.PLAIN, Compression.GZIP),
        (DumpFormat.PLAIN, Compression.ZSTD),
        (DumpFormat.CUSTOM, Compression.NONE),
        (DumpFormat.CUSTOM, Compression.GZIP),
    }
)
LEVELS = {Compression.NONE: (0, 0), Compression.GZIP: (1, 9), Compression.ZSTD: (1, 19)}
DEFAULT_LEVELS = {Compression.NONE: 0, Compression.GZIP: 6, Compression.ZSTD: 3}


@dataclass(frozen=True)
class BackupOptions:
    """How to dump: format, compression and its level (validated on construction)."""

    format: DumpFormat = DumpFormat.PLAIN
    compression: Compression = Compression.NONE
    level: int | None = None

    def __post_init__(self) -> None:
        if (self.format, self.compression) not in ALLOWED:
            raise InvalidInput(
                f"{self.format} format cannot use {self.compression} compression",
                "custom archives compress internally with gzip; use plain format for zstd",
            )
        low, high = LEVELS[self.compression]
        if self.level is not None and not low <= self.level <= high:
            raise InvalidInput(
                f"compression level {self.level} is out of range for {self.compression}",
                f"use {low} to {high}",
            )

    @property
    def stream_compression(self) -> Compression:
        """What pgkeep applies to the stored bytes: custom archives compress inside, not around."""
        return self.compression if self.format is DumpFormat.PLAIN else Compression.NONE

    @property
    def effective_level(self) -> int:
        return self.level if self.level is not None else DEFAULT_LEVELS[self.compression]


@dataclass(frozen=True)
class StoredObject:
    """One completed object in storage: its name, size, last modification (UTC) and, where
    the store has one, a tag that changes whenever its bytes do."""

    name: str
    size_bytes: int
    modified_at: datetime
    etag: str = ""


@dataclass(frozen=True)
class Features:
    """What a store can do, declared rather than answered with None (pgBackRest's flags)."""

    free_space: bool = False  # free_bytes() measures something: the disk pre-flight applies
    page_cache: bool = False  # read_cached() may answer without waiting


@dataclass(frozen=True)
class SourceFacts:
    """What a restore needs to know of a dump's source, read in the dump's own snapshot."""

    database_owner: str = ""
    owners: tuple[str, ...] = ()  # roles owning its objects
    grantees: tuple[str, ...] = ()  # roles its grants name (grantees, grantors)
    extensions: tuple[tuple[str, str], ...] = ()  # (name, version)
    server_id: str = ""  # the server's system identifier


@dataclass(frozen=True)
class Check:
    """One verification step (or readiness check) and its outcome. A readiness check that is
    not `critical` is shown but never makes the process unready (what only restores need)."""

    name: str
    ok: bool
    details: str = ""
    critical: bool = True


@dataclass(frozen=True)
class Rehearsal:
    """A test restore into a server of another major, without owners or grants (its
    `server` as host:port; `details`: the rows proven, or the first error)."""

    server: str
    major: int
    ok: bool
    details: str


@dataclass(frozen=True)
class Verification:
    """`verified` None: inconclusive, the verify server lacked what the backup needs
    (core/environment.py); never a fault of the backup."""

    verified: bool | None
    verified_at: datetime
    checks: tuple[Check, ...]
    source: str = "primary"  # or "copy:NAME" when the primary failed and a copy did not
    rehearsals: tuple[Rehearsal, ...] = ()


class Trust(StrEnum):
    """Whether a backup's manifest is one this service wrote and signed, and if not, why."""

    SIGNED = "signed"
    MISSING = "no manifest"
    UNREADABLE = "manifest unreadable"
    UNSIGNED = "manifest unsigned"
    UNKNOWN_KEY = "manifest signed with an unknown key"
    BAD_SIGNATURE = "manifest signature does not match"
    OTHER_BACKUP = "manifest describes another backup"
    TAMPERED = "manifest tampered with"


@dataclass(frozen=True)
class TableDrift:
    """A table that lost rows between two backups (`after` None: it is gone)."""

    table: str
    before: int
    after: int | None


@dataclass(frozen=True)
class Drift:
    """Why a backup holds much less than the one before it (core/drift.py)."""

    previous: str
    tables: tuple[TableDrift, ...] = ()
    size_before: int | None = None
    size_after: int | None = None

    def reasons(self) -> tuple[str, ...]:
        said = [
            f"table {t.table} is gone ({t.before} rows before)"
            if t.after is None
            else f"table {t.table} lost {t.before - t.after} of {t.before} rows"
            for t in self.tables
        ]
        if self.size_before is not None:
            said.append(f"the dump shrank from {self.size_before} to {self.size_after} bytes")
        return tuple(said)


@dataclass(frozen=True)
class Manifest:
    """What a backup is, written beside it before it becomes visible.

    `restrict_key` is the key of the `\\restrict` line a plain dump opens with;
    a restore refuses a plain stream that does not open with it.
    """

    name: str
    format: DumpFormat
    compression: Compression
    level: int
    size_bytes: int
    sha256: str
    database: str
    server_version: str
    pg_dump_version: str
    started_at: datetime
    finished_at: datetime
    created_by: str
    row_counts: dict[str, int] | None
    verification: Verification | None = None
    restrict_key: str | None = None
    kind: str = "database"  # or "globals": roles and tablespaces (pg_dumpall --globals-only)
    flags: tuple[str, ...] = ()  # dump options that change what it holds (--no-role-passwords)
    recipients: tuple[str, ...] = ()  # encrypted (age): its recipients' fingerprints, never keys
    # Bound in the signature: the target and store prefix it was made for (None: made
    # before binding, trusted on its own target only), the source server's identity (shown,
    # never a reason to refuse: a lost server's backups restore onto a new one).
    target: str | None = None
    prefix: str | None = None
    server_id: str = ""
    # What later reads need, recorded while dumping: the source database's owner, the
    # roles owning its objects, its extensions (name → version), a plain dump's plan.
    database_owner: str = ""
    owners: tuple[str, ...] = ()
    grantees: tuple[str, ...] = ()  # roles its grants name (core/environment.py)
    extensions: tuple[tuple[str, str], ...] = ()
    plan: Plan | None = None
    origin: str = "dump"  # or "import": a file from elsewhere, checked when imported
    drift: Drift | None = None  # much less than the backup before it (core/drift.py)
    labels: tuple[tuple[str, str], ...] = ()  # sorted by key (core/labels.py)

    @property
    def duration_ms(self) -> int:
        return int((self.finished_at - self.started_at).total_seconds() * 1000)


@dataclass(frozen=True)
class Backup:
    """One completed backup of a target database.

    `created_at` is the moment its dump started, to the second, as encoded in
    its name; retention ages backups from it. `manifest` is what its manifest
    says when that can be read (signed, or unsigned from before signing), and
    `trust` whether this service signed it: only signed backups are ever restored.
    """

    name: str
    size_bytes: int
    created_at: datetime
    modified_at: datetime
    format: DumpFormat = DumpFormat.PLAIN
    compression: Compression = Compression.NONE
    manifest: Manifest | None = None
    trust: Trust = Trust.MISSING
    # The object as found when this Backup was built: verify and restore read only that
    # version (its etag), so bytes swapped in after the checksum pass are never loaded.
    stored: StoredObject | None = None

    @property
    def signed(self) -> bool:
        return self.trust is Trust.SIGNED

    @property
    def stream_compression(self) -> Compression:
        """How the stored bytes are wrapped (custom archives never are)."""
        return self.compression if self.format is DumpFormat.PLAIN else Compression.NONE

    @property
    def encrypted(self) -> bool:
        """Stored as an age file: as its manifest's recipients say (the name, `.age`, only
        when there is no manifest to ask)."""
        if self.manifest is not None:
            return bool(self.manifest.recipients)
        return self.name.endswith(".age")

    @property
    def recipients(self) -> tuple[str, ...]:
        """The fingerprints of the recipients it is encrypted to, as its manifest says."""
        return self.manifest.recipients if self.manifest else ()


@dataclass(frozen=True)
class TableComparison:
    table: str
    expected: int | None
    actual: int

    @property
    def ok(self) -> bool:
        return self.expected is None or self.expected == self.actual


@dataclass(frozen=True)
class DroppedForeignKey:
    """A kept table's foreign key to a table a table-level restore did not keep."""

    table: str  # as the manifest's rowCounts keys
    name: str
    references: str


@dataclass(frozen=True)
class RestoreResult:
    target_database: str
    duration_ms: int
    tables: tuple[TableComparison, ...] = field(default_factory=tuple)
    source: str = "primary"  # or "copy:NAME"
    dropped_foreign_keys: tuple[DroppedForeignKey, ...] = ()
