"""Request and response bodies: the spec's fields (camelCase), plus additive ones."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool

from pgkeep import formats
from pgkeep.core import manifest_json, options
from pgkeep.core.models import (
    Backup,
    BackupOptions,
    Compression,
    DumpFormat,
    RestoreResult,
)
from pgkeep.core.selecting import Selection
from pgkeep.core.verdicts import state_of
from pgkeep.http.verdicts import CheckItem, VerificationItem, VerifyResponse

__all__ = ["CheckItem", "VerificationItem", "VerifyResponse"]


class ErrorBody(BaseModel):
    error: str
    details: str = ""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CreateRequest(_Strict):
    """The optional body of create; an empty body keeps the spec's plain, uncompressed `.sql`."""

    format: DumpFormat | None = None
    compression: Compression | None = None
    level: int | None = Field(default=None, ge=0, le=19, description="gzip 1-9, zstd 1-19")
    labels: dict[str, Any] | None = Field(
        default=None,
        description="labels for the new backup: at most 16, keys [A-Za-z0-9_.-]{1,40}, "
        "values strings of at most 200 characters",
        examples=[{"reason": "pre-migration", "appVersion": "2.3.1"}],
    )

    def options(self, defaults: BackupOptions) -> BackupOptions:
        """Fill what the body leaves out from the defaults (core/options.py, as the CLI)."""
        return options.resolve(defaults, self.format, self.compression, self.level)


class LabelRequest(_Strict):
    """PATCH /api/backup/{name}: labels merged as RFC 7396 says (null removes one)."""

    labels: dict[str, Any]


class VerifyRequest(_Strict):
    restore: StrictBool = False  # true or false only: "yes" and 1 are refused


_Name = Annotated[str, Field(min_length=1, max_length=300)]


class RestoreRequest(_Strict):
    targetDatabase: str = Field(  # noqa: N815 (the spec's JSON is camelCase)
        min_length=1, max_length=63, description="a new database's name"
    )
    replace: StrictBool = False
    confirm: str | None = Field(default=None, max_length=63)
    tables: list[_Name] | None = Field(
        default=None,
        min_length=1,
        max_length=1000,
        description="only these tables, written as the manifest's rowCounts keys",
        examples=[["public.actor"]],
    )
    schemas: list[_Name] | None = Field(
        default=None, min_length=1, max_length=100, description="only these schemas' tables"
    )

    def selection(self) -> Selection:
        return Selection(tuple(self.tables or ()), tuple(self.schemas or ()))


class _BackupFields(BaseModel):
    """Additive fields shared by create and list responses."""

    sizeBytes: int  # noqa: N815
    sha256: str | None
    format: DumpFormat
    compression: Compression
    verifiedAt: str | None  # noqa: N815
    verified: bool | None = Field(description="null: never verified, or inconclusive")
    verdict: str | None = Field(
        default=None, examples=["restored", "checksum", "inconclusive", "failed"]
    )
    verifyProblem: str | None  # noqa: N815 (why the last verify failed)
    hasManifest: bool  # noqa: N815
    signed: bool
    trust: str
    encrypted: bool = False
    recipients: list[str] = Field(
        default_factory=list,
        description="age: the fingerprints of the recipients it is encrypted to (never keys)",
        examples=[["age:c66c56ffd13497a0"]],
    )
    labels: dict[str, str] = Field(default_factory=dict, description="the backup's labels")
    drift: dict[str, Any] | None = Field(
        default=None,
        description="much less than the backup before it (that one is pinned): why; or null",
    )

    @staticmethod
    def fields_of(backup: Backup) -> dict[str, object]:
        m = backup.manifest
        v = m.verification if m else None
        return {
            "sizeBytes": backup.size_bytes,
            "sha256": m.sha256 if m else None,
            "format": backup.format,
            "compression": backup.compression,
            "verifiedAt": formats.iso_ms(v.verified_at) if v else None,
            "verified": v.verified if v else None,
            "verdict": state_of(v) if v else None,
            "verifyProblem": "; ".join(f"{c.name}: {c.details}" for c in v.checks if not c.ok)
            if v and v.verified is False
            else None,
            "hasManifest": m is not None,
            "signed": backup.signed,
            "trust": str(backup.trust),
            "encrypted": backup.encrypted,
            "recipients": list(backup.recipients),
            "drift": manifest_json.drift_json(m.drift) if m else None,
            "labels": dict(m.labels) if m else {},
        }


class CreateResponse(_BackupFields):
    success: bool = True
    filename: str
    size: str = Field(examples=["0.04 MB"])
    timestamp: str = Field(examples=["2024-12-09T10:30:45.000Z"])

    @classmethod
    def of(cls, backup: Backup) -> CreateResponse:
        return cls(
            filename=backup.name,
            size=formats.size_text(backup.size_bytes),
            timestamp=formats.iso_ms(backup.created_at),
            **cls.fields_of(backup),  # type: ignore[arg-type]
        )


class BackupItem(_BackupFields):
    filename: str
    size: str
    created: str
    modified: str
    target: str | None = None
    kind: str = Field(default="database", examples=["database", "globals"])
    pinned: bool = False
    durationMs: int | None = None  # noqa: N815
    verification: VerificationItem | None = None

    @classmethod
    def of(cls, backup: Backup) -> BackupItem:
        return cls(**cls.plain(backup))

    @classmethod
    def plain(cls, backup: Backup) -> dict[str, Any]:
        """The item as plain JSON values: lists of thousands skip model validation."""
        fields = cls.fields_of(backup)
        return {
            "filename": backup.name,
            "size": formats.size_text(backup.size_bytes),
            "created": formats.iso_ms(backup.created_at),
            "modified": formats.iso_ms(backup.modified_at),
            **fields,
            "format": str(fields["format"]),
            "compression": str(fields["compression"]),
        }


class ListResponse(BaseModel):
    success: bool = True
    backups: list[BackupItem]
    count: int


class DeleteResponse(BaseModel):
    success: bool = True
    message: str = "Backup deleted successfully"
    filename: str
    stores: list[str] = Field(
        default_factory=list, description='where it was removed from: "primary", "copy:NAME"'
    )


class TableItem(BaseModel):
    table: str
    expectedRows: int | None  # noqa: N815
    restoredRows: int  # noqa: N815
    ok: bool


class ForeignKeyItem(BaseModel):
    table: str
    name: str
    references: str


class RestoreResponse(BaseModel):
    success: bool = True
    filename: str
    targetDatabase: str  # noqa: N815
    durationMs: int  # noqa: N815
    tables: list[TableItem]
    source: str = "primary"
    droppedForeignKeys: list[ForeignKeyItem] = Field(  # noqa: N815
        default_factory=list, description="a table-level restore's foreign keys to tables not kept"
    )

    @classmethod
    def of(cls, name: str, r: RestoreResult) -> RestoreResponse:
        tables = [
            TableItem(table=t.table, expectedRows=t.expected, restoredRows=t.actual, ok=t.ok)
            for t in r.tables
        ]
        return cls(
            filename=name,
            targetDatabase=r.target_database,
            durationMs=r.duration_ms,
            tables=tables,
            source=r.source,
            droppedForeignKeys=[
                ForeignKeyItem(table=k.table, name=k.name, references=k.references)
                for k in r.dropped_foreign_keys
            ],
        )


class DownloadLinkResponse(BaseModel):
    url: str
    expiresAt: str  # noqa: N815


class HealthResponse(BaseModel):
    status: str = "ok"
