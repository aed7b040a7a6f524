"""Taking a dump's owners and privileges out of what a rehearsal runs, as pg_restore
--no-owner --no-privileges does: `ALTER … OWNER TO`, `GRANT`, `REVOKE` and `ALTER DEFAULT
PRIVILEGES` statements, found as psql reads them (core/sqlscan.py), so the same words
inside a string or a function body stay."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from pgkeep.core import sqlscan
from pgkeep.core.restore_plan import is_owner_statement
from pgkeep.errors import Corrupt

_PRIVILEGES = (("grant",), ("revoke",), ("alter", "default", "privileges"))


def ranges(chunks: Iterable[bytes]) -> list[tuple[int, int]]:
    """The byte ranges of the owner and privilege statements in `chunks` (SQL as pg_dump
    writes it)."""
    found: list[tuple[int, int]] = []

    def statement(s: sqlscan.Statement) -> None:
        if any(s.words[: len(p)] == p for p in _PRIVILEGES) or is_owner_statement(s):
            found.append((s.start, s.end))

    scanner = sqlscan.Scanner(on_statement=statement)
    try:
        for chunk in chunks:
            scanner.feed(chunk)
        scanner.finish()
    except sqlscan.ScanError as exc:
        raise Corrupt(f"the dump cannot be read as psql would: {exc}") from None
    return found


def without(read: Callable[[], Iterator[bytes]]) -> Iterator[bytes]:
    """The SQL `read()` gives, its owner and privilege statements left out (`read` is
    called twice)."""
    cuts = ranges(read())
    at = 0
    for chunk in read():
        end = at + len(chunk)
        keep = at
        for start, stop in cuts:
            if stop <= keep or start >= end:
                continue
            if start > keep:
                yield chunk[keep - at : start - at]
            keep = min(stop, end)
        if keep < end:
            yield chunk[keep - at :]
        at = end
