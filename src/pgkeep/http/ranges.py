"""HTTP Range for downloads: one `bytes=` range, parsed against the object's size (pure)."""

from __future__ import annotations

import re

_RANGE = re.compile(r"bytes=([0-9]*)-([0-9]*)")
# A position of more than 19 significant digits is past 2**63 - 1 bytes, so past the end of
# any backup: it stands for BEYOND rather than going to int() (Python refuses to parse more
# than 4,300 digits, and the ValueError was a 500 that leaked the opened backup).
_MAX_DIGITS = 19
BEYOND = 10**_MAX_DIGITS


class Unsatisfiable(Exception):
    pass


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(start, end-exclusive) for a single satisfiable range; None to send the whole object.

    Malformed and multi-range headers are ignored (RFC 9110 allows it), so they
    get the whole object; a well-formed range past the end raises Unsatisfiable,
    however many digits its first position has.
    """
    if header is None:
        return None
    match = _RANGE.fullmatch(header.strip())
    if match is None or (not match[1] and not match[2]):
        return None
    if not match[1]:  # suffix range: the last N bytes
        length = _position(match[2])
        if length == 0 or size == 0:
            raise Unsatisfiable
        return max(0, size - length), size
    start = _position(match[1])
    end = _position(match[2]) + 1 if match[2] else size
    if match[2] and end <= start:
        return None  # last-pos before first-pos: invalid, so ignored
    if start >= size:
        raise Unsatisfiable
    return start, min(end, size)


def _position(digits: str) -> int:
    """A byte position or length; BEYOND for one larger than any object can be."""
    significant = digits.lstrip("0") or "0"
    return int(significant) if len(significant) <= _MAX_DIGITS else BEYOND
