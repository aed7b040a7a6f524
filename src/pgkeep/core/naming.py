"""Backup names: made from the dump's start time, parsed back, and validated by allowlist.

A name is `backup-YYYY-MM-DDTHH-MM-SS<ext>` in UTC, where the extension says
format and compression: `.sql`, `.sql.gz`, `.sql.zst` (plain) or `.dump`
(custom). A second backup within the same second gets a `-N` suffix
(`…T10-30-45-2.sql`). Anything else is not a backup name, whatever storage holds.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Container
from dataclasses import dataclass
from datetime import UTC, datetime

from pgkeep.core.models import Compression, DumpFormat
from pgkeep.core.pipeline import SUFFIXES
from pgkeep.errors import InvalidInput

# ASCII only: `\d` would also match other scripts' digits, which int() then reads.
_PATTERN = re.compile(
    r"backup-(?P<stamp>[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}-[0-9]{2}-[0-9]{2})"
    r"(?:-(?P<seq>[2-9]|[1-9][0-9]{1,3}))?"
    r"(?P<ext>" + "|".join(re.escape(ext) for ext in SUFFIXES) + ")",
    re.ASCII,
)
_DIGITS = re.compile(r"[0-9]+")
MAX_NAME_LENGTH = 64
MAX_SEQUENCE = 9999
MANIFEST_SUFFIX = ".json"


def make_name(created_at: datetime, taken: Container[str], extension: str = ".sql") -> str:
    """The first free name for a backup started at `created_at` (UTC).

    Suffixes count per second across extensions, so `…45.sql` and `…45-2.dump`
    never share a timestamp and sequence.
    """
    t = created_at.astimezone(UTC)
    stamp = f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}-{t.minute:02d}-{t.second:02d}"
    if extension not in SUFFIXES or t.year < 1000:
        raise InvalidInput(f"cannot name a backup started at {stamp} with {extension!r}")
    for seq in range(1, MAX_SEQUENCE + 1):
        base = f"backup-{stamp}" + (f"-{seq}" if seq > 1 else "")
        if not any(base + ext in taken for ext in SUFFIXES):
            return base + extension
    raise InvalidInput(f"too many backups started at {stamp}")


@dataclass(frozen=True)
class Parsed:
    created_at: datetime
    seq: int
    extension: str


@functools.lru_cache(maxsize=65536)
def parse(name: str) -> Parsed | None:
    """A backup name's parts, or None if it is not one. Cached: lists parse every name."""
    if len(name) > MAX_NAME_LENGTH:
        return None
    match = _PATTERN.fullmatch(name)
    if match is None:
        return None
    y, mo, d, h, mi, sec = (int(p) for p in _DIGITS.findall(match["stamp"]))
    try:
        created = datetime(y, mo, d, h, mi, sec, tzinfo=UTC)
    except ValueError:  # month 13, 30 February…
        return None
    return Parsed(created, int(match["seq"]) if match["seq"] else 1, match["ext"])


def is_backup_name(name: str) -> bool:
    return parse(name) is not None


def validate_name(name: str) -> str:
    """Return `name` if it is a backup name, else raise InvalidInput naming the problem."""
    if parse(name) is None:
        raise InvalidInput(
            f"invalid backup name {name[:MAX_NAME_LENGTH]!a}",
            "expected backup-YYYY-MM-DDTHH-MM-SS.sql (or .sql.gz, .sql.zst, .dump), "
            "optionally with a -N suffix",
        )
    return name


def _parsed(name: str) -> Parsed:
    validate_name(name)
    parsed = parse(name)
    assert parsed is not None  # noqa: S101 (validated)
    return parsed


def kind(name: str) -> tuple[DumpFormat, Compression]:
    """Format and compression as the (valid) name's extension says."""
    return SUFFIXES[_parsed(name).extension]


def manifest_name(name: str) -> str:
    return name + MANIFEST_SUFFIX


def created_at(name: str) -> datetime:
    """The dump start time encoded in a (valid) backup name, UTC."""
    return _parsed(name).created_at


def sort_key(name: str) -> tuple[datetime, int]:
    """Orders backups by start time, then by suffix; newest last."""
    parsed = _parsed(name)
    return parsed.created_at, parsed.seq
