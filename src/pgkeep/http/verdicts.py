"""What a verify answers and what a list item says of a backup's last verify: its checks,
its verdict (core/verdicts.py) and its upgrade rehearsals (core/rehearsing.py)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from pgkeep import formats
from pgkeep.core.models import Rehearsal, Verification
from pgkeep.core.verdicts import state_of


class RehearsalItem(BaseModel):
    """A test restore into a server of another major, without owners or grants."""

    server: str = Field(examples=["db-next:5432"], description="host:port, never credentials")
    major: int = Field(examples=[18])
    ok: bool
    details: str = Field(description="the rows proven, or the first error")

    @classmethod
    def of(cls, r: Rehearsal) -> RehearsalItem:
        return cls(server=r.server, major=r.major, ok=r.ok, details=r.details)


class VerificationItem(BaseModel):
    """What the last verify proved, never more (core/verdicts.py)."""

    state: str = Field(examples=["restored", "checksum", "inconclusive", "failed", "none"])
    at: str | None = None
    rowsProven: int | None = None  # noqa: N815
    check: str | None = Field(
        default=None, description="the first check that failed (inconclusive: environment)"
    )
    details: str | None = Field(
        default=None, description="failed: why; inconclusive: what the verify server lacks"
    )
    source: str | None = Field(default=None, examples=["primary", "copy:offsite"])
    rehearsals: list[RehearsalItem] = Field(default_factory=list)


class CheckItem(BaseModel):
    name: str
    ok: bool
    details: str


class VerifyResponse(BaseModel):
    success: bool = True
    filename: str
    verified: bool | None = Field(description="null when inconclusive, never false then")
    verdict: str = Field(examples=["restored", "checksum", "inconclusive", "failed"])
    verifiedAt: str  # noqa: N815
    checks: list[CheckItem]
    source: str = Field(default="primary", examples=["primary", "copy:offsite"])
    rehearsals: list[RehearsalItem] = Field(
        default_factory=list, description="with restore: one per rehearsal server"
    )

    @classmethod
    def of(cls, name: str, v: Verification) -> VerifyResponse:
        checks = [CheckItem(name=c.name, ok=c.ok, details=c.details) for c in v.checks]
        return cls(
            filename=name,
            verified=v.verified,
            verdict=state_of(v),
            verifiedAt=formats.iso_ms(v.verified_at),
            checks=checks,
            source=v.source,
            rehearsals=[RehearsalItem.of(r) for r in v.rehearsals],
        )
