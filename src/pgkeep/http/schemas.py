"""Response bodies, field for field as the spec has them (camelCase), plus additive fields."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from pgkeep import formats
from pgkeep.core.models import Backup


class ErrorBody(BaseModel):
    error: str
    details: str = ""


class CreateRequest(BaseModel):
    """The optional body of create: no options yet; unknown fields are refused, not ignored."""

    model_config = ConfigDict(extra="forbid")


class CreateResponse(BaseModel):
    success: bool = True
    filename: str
    size: str = Field(examples=["0.04 MB"])
    timestamp: str = Field(examples=["2024-12-09T10:30:45.000Z"])
    sizeBytes: int  # noqa: N815 (the spec's JSON is camelCase)

    @classmethod
    def of(cls, backup: Backup) -> CreateResponse:
        return cls(
            filename=backup.name,
            size=formats.size_text(backup.size_bytes),
            timestamp=formats.iso_ms(backup.created_at),
            sizeBytes=backup.size_bytes,
        )


class BackupItem(BaseModel):
    filename: str
    size: str
    created: str
    modified: str
    sizeBytes: int  # noqa: N815

    @classmethod
    def of(cls, backup: Backup) -> BackupItem:
        return cls(
            filename=backup.name,
            size=formats.size_text(backup.size_bytes),
            created=formats.iso_ms(backup.created_at),
            modified=formats.iso_ms(backup.modified_at),
            sizeBytes=backup.size_bytes,
        )


class ListResponse(BaseModel):
    success: bool = True
    backups: list[BackupItem]
    count: int


class DeleteResponse(BaseModel):
    success: bool = True
    message: str = "Backup deleted successfully"
    filename: str


class HealthResponse(BaseModel):
    status: str = "ok"
