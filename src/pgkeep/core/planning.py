"""Planning a plain dump's restore while its bytes go by (when written, imported, or read back).

The planner follows the dump as psql would (core/sqlscan.py), starts a new run where
an entry's role or owner changes (restore_plan.role_of), hashes each run, notes its
`ALTER … OWNER TO` statements (the admin runs them after a loader), leaves out the
dump's own opening `\\restrict` line and closing `\\unrestrict` line (psql gets
pgkeep's own key, never lifted), and keeps pg_dump's preamble and the session
settings in effect at each run's start. With `strict` (an import: a file from
elsewhere) every entry is the loader's whatever owner it names, and every statement
is checked (restore_plan.refusal, admin_refusal).
"""

from __future__ import annotations

import collections
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from pgkeep.core import sqlscan
from pgkeep.core.import_rules import admin_refusal, owner_statement_refusal, refusal
from pgkeep.core.restore_plan import (
    ADMIN,
    STATE,
    Plan,
    Run,
    import_role_of,
    is_owner_statement,
    role_of,
)
from pgkeep.errors import Corrupt


@dataclass
class _Open:
    role: str
    owner: str
    start: int
    state: tuple[str, ...]
    digest: Any = field(default_factory=hashlib.sha256)
    skips: list[tuple[int, int]] = field(default_factory=list)


class Planner:
    """Feed a plain dump's bytes (as written, or as read back); `finish` gives its plan.

    With `strict` (an import: a file from elsewhere), what the admin session would run is
    checked statement by statement against what pg_dump writes there; anything else is
    refused naming it.
    """

    def __init__(self, *, strict: bool = False) -> None:
        self._strict = strict
        self._scanner = sqlscan.Scanner(self._header, self._statement, self._meta)
        self._pending: collections.deque[memoryview] = collections.deque()  # from _hashed on
        self._hashed = 0
        self._runs: list[Run] = []
        self._open = _Open(ADMIN, "", 0, ())
        # Where a new run starts: its role, owner and the settings in effect there (taken
        # when its header is read: the bytes may have been read well past it).
        self._cuts: list[tuple[int, str, str, tuple[str, ...]]] = []
        self._owned: list[tuple[int, int]] = []  # `ALTER … OWNER TO` statements not the admin's
        self._skips: list[tuple[int, int]] = []  # the dump's own \restrict / \unrestrict
        self._closing: tuple[int, int] | None = None  # an \unrestrict that may be the last line
        self._preamble_end: int | None = None
        self._preamble = b""
        self._state: dict[str, str] = {}
        self._role = (ADMIN, "")
        self._first_meta = True
        self.opening_key: str | None = None  # of the `\\restrict` line the dump opens with

    def feed(self, chunk: bytes) -> None:
        if chunk:
            self._pending.append(memoryview(chunk))
        try:
            self._scanner.feed(chunk)
        except sqlscan.ScanError as exc:
            raise Corrupt(f"the plain dump cannot be read as psql would: {exc}") from None
        self._hash_to(self._safe())

    def finish(self) -> Plan:
        try:
            self._scanner.finish()
        except sqlscan.ScanError as exc:
            raise Corrupt(f"the plain dump cannot be read as psql would: {exc}") from None
        end = self._hashed + sum(len(piece) for piece in self._pending)
        if self._closing is not None:
            self._skips.append(self._closing)
        self._hash_to(end)
        self._close_run(end)
        runs = tuple(r for r in self._runs if r.end > r.start)
        if not runs:
            raise Corrupt("the plain dump is empty")
        preamble = self._preamble.decode("utf-8", "replace")
        return Plan(preamble, runs, end, imported=self._strict)

    # -- what the scanner found ----------------------------------------------------------

    def _header(self, header: sqlscan.Header) -> None:
        self._confirm_closing()
        if self._preamble_end is None:
            self._preamble_end = header.start
        # An imported dump's code never runs as the owner it names, nor as pgkeep.
        role, owner = import_role_of(header) if self._strict else role_of(header)
        if (role, owner) != self._role:
            self._cuts.append((header.start, role, owner, self._state_now()))
            self._role = (role, owner)

    def _statement(self, statement: sqlscan.Statement) -> None:
        self._confirm_closing()
        self._first_meta = False  # only comments may come before the opening \restrict
        words = statement.words
        if words[:1] == ("set",) and len(words) > 1 and words[1] in STATE:
            self._state[words[1]] = statement.text
        owned = is_owner_statement(statement)
        if self._role[0] != ADMIN and owned:
            self._owned.append((statement.start, statement.end))
        if self._strict:
            admin = self._role[0] == ADMIN
            refused = admin_refusal(statement) if admin else refusal(statement)
            if owned and not refused:
                refused = owner_statement_refusal(statement)
            if refused:
                where = "in pgkeep's own session" if admin else "where pg_dump writes none"
                raise Corrupt(
                    f"the dump runs {refused} {where}; not imported",
                    f"at byte {statement.start}: an imported dump may hold only what pg_dump "
                    "writes, and pgkeep's own session runs only its grants, comments, "
                    "extensions and owners",
                )

    def _meta(self, meta: sqlscan.MetaLine) -> None:
        self._confirm_closing()
        first, self._first_meta = self._first_meta, False
        if first and self._preamble_end is None and meta.text.startswith("\\restrict "):
            self._skips.append((meta.start, meta.end))
            self.opening_key = meta.text.removeprefix("\\restrict ").strip()
        elif meta.text.startswith("\\unrestrict "):
            self._closing = (meta.start, meta.end)
        elif self._strict:
            raise Corrupt(
                f"the dump holds a psql command ({meta.text[:40]!a}); not imported",
                "pgkeep never lets psql run commands from a dump",
            )

    def _confirm_closing(self) -> None:
        """Something follows an `\\unrestrict`: it was not the dump's last line, so it stays
        (and stops psql, which pgkeep never unrestricts)."""
        self._closing = None

    # -- hashing each run as its bytes go by ------------------------------------------------

    def _safe(self) -> int:
        """How far every byte's run is known: not past a comment block that may still turn
        out to be an entry's header, nor past an `\\unrestrict` that may be skipped."""
        safe = self._scanner.position
        block = self._scanner._block
        if block is not None:
            safe = min(safe, block)
        if self._closing is not None:
            safe = min(safe, self._closing[0])
        return safe

    def _hash_to(self, upto: int) -> None:
        while self._hashed < upto:
            cut = self._cuts[0][0] if self._cuts else upto
            skip = self._skips[0] if self._skips else (upto, upto)
            stop = min(upto, cut, skip[0])
            if stop > self._hashed:
                self._take(stop - self._hashed)
            elif self._skips and skip[0] == self._hashed:
                self._skips.pop(0)
                self._open.skips.append(skip)
                self._drop(skip[1] - skip[0])
            else:
                _, role, owner, state = self._cuts.pop(0)
                self._close_run(cut)
                self._open = _Open(role, owner, cut, state)

    def _take(self, size: int) -> None:
        for piece in self._pieces(size):
            self._open.digest.update(piece)
            if self._preamble_end is None or self._hashed < self._preamble_end:
                limit = (self._preamble_end or 1 << 62) - self._hashed
                self._preamble += bytes(piece[:limit])
            self._hashed += len(piece)
        if self._preamble_end is not None and len(self._preamble) > self._preamble_end:
            self._preamble = self._preamble[: self._preamble_end]

    def _drop(self, size: int) -> None:
        for piece in self._pieces(size):
            self._hashed += len(piece)

    def _pieces(self, size: int) -> Iterator[memoryview]:
        """The next `size` pending bytes, as views (no copies of a dump's rows)."""
        while size > 0:
            piece = self._pending.popleft()
            if len(piece) > size:
                self._pending.appendleft(piece[size:])
                piece = piece[:size]
            size -= len(piece)
            yield piece

    def _close_run(self, end: int) -> None:
        o = self._open
        owned = tuple(r for r in self._owned if o.start <= r[0] and r[1] <= end)
        self._owned = [r for r in self._owned if r[1] > end]
        sha256 = o.digest.hexdigest()
        self._runs.append(
            Run(o.role, o.start, end, sha256, o.state, tuple(o.skips), o.owner, owned)
        )

    def _state_now(self) -> tuple[str, ...]:
        return tuple(self._state[k] for k in STATE if k in self._state)
