"""HTTP Range for downloads: one `bytes=` range, parsed against the object's size (pure)."""

from __future__ import annotations

import re

_RANGE = re.compile(r"bytes=([0-9]*)-([0-9]*)")


class Unsatisfiable(Exception):
    pass


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(start, end-exclusive) for a single satisfiable range; None to send the whole object.

    Malformed and multi-range headers are ignored (RFC 9110 allows it), so they
    get the whole object; a well-formed range past the end raises Unsatisfiable.
    """
    if header is None:
        return None
    match = _RANGE.fullmatch(header.strip())
    if match is None or (not match[1] and not match[2]):
        return None
    if not match[1]:  # suffix range: the last N bytes
        length = int(match[2])
        if length == 0 or size == 0:
            raise Unsatisfiable
        return max(0, size - length), size
    start = int(match[1])
    end = int(match[2]) + 1 if match[2] else size
    if match[2] and end <= start:
        return None  # last-pos before first-pos: invalid, so ignored
    if start >= size:
        raise Unsatisfiable
    return start, min(end, size)
