"""How sizes and times are written for people and the spec: `0.04 MB`, `…T10:30:45.000Z`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


def size_text(size_bytes: int) -> str:
    """Mebibytes with two decimals, as the spec's `"size": "0.04 MB"`."""
    return f"{size_bytes / 1024 / 1024:.2f} MB"


def iso_ms(moment: datetime) -> str:
    """ISO 8601 in UTC with milliseconds and `Z`."""
    t = moment if moment.tzinfo is UTC else moment.astimezone(UTC)
    # Formatted by hand: strftime was the top cost of listing 10,000 backups.
    return (
        f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:{t.second:02d}"
        f".{t.microsecond // 1000:03d}Z"
    )


def http_date(moment: datetime) -> str:
    """RFC 9110 IMF-fixdate, for Last-Modified."""
    return moment.astimezone(UTC).strftime("%a, %d %b %Y %H:%M:%S GMT")


def duration(span: timedelta) -> str:
    """As people write it (`26h`, `7d`, `90m`, `45s`), not `1 day, 2:00:00`."""
    seconds = int(span.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
