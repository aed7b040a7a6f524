"""Loading a dump into a database, run by run, from one read (core/reading.py).

A plain dump goes by its plan (core/restore_plan.py): an OWNER run is the loader's
unless its owner is a superuser where it is restored (the session says); an admin run
is spooled and its sha256 compared with the plan before psql sees a byte of it; a
loader run is streamed and compared before its last piece is sent, so psql never
reaches COMMIT on bytes that were not planned, and its `ALTER … OWNER TO` statements
are held back and run by the admin once the run has succeeded (at the very end for an
imported dump). Every run but the first gets the dump's preamble again (its SET lines)
and the settings in effect where it starts. A custom archive is staged once by the
adapter, which starts pg_restore only after the read's own check has passed; its schema
sections are printed by pg_restore and run as a plain dump's are (`load_printed`). A
rehearsal's session is `bare`: no owners are given and no grants run (core/grants.py).
"""

from __future__ import annotations

import hashlib
import re
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from pgkeep.core import grants, planning
from pgkeep.core.models import Backup, DumpFormat, TableComparison
from pgkeep.core.ports import RestoreSession as Session
from pgkeep.core.reading import Reading
from pgkeep.core.restore_plan import ADMIN, LOADER, OWNER, Plan, Run
from pgkeep.errors import Corrupt, RestoreFailed

SPOOL_MEMORY = 16 * 1024 * 1024  # an admin run (schema) beyond this spills to a file with no name


class _Cursor:
    """The decoded dump, read forward by offset."""

    def __init__(self, content: Iterator[bytes]) -> None:
        self._content = content
        self._piece = b""
        self._at = 0  # offset of _piece[0]

    def take(self, start: int, end: int) -> Iterator[bytes]:
        """The bytes [start, end); what lies before `start` is passed over."""
        while self._at < end:
            if not self._piece:
                self._piece = next(self._content, b"")
                if not self._piece:
                    raise Corrupt("the dump ends before its restore plan does")
            head = self._piece[: end - self._at]
            skip = max(0, start - self._at)
            if skip < len(head):
                yield head[skip:]
            self._piece = self._piece[len(head) :]
            self._at += len(head)

    def drain(self) -> None:
        """Read to the end: the read checks the stored bytes' sha256 there."""
        for _ in self._content:
            pass


def _body(cursor: _Cursor, run: Run, diverted: list[bytes] | None) -> Iterator[bytes]:
    """A run's bytes without its skipped lines (and, given `diverted`, without its owner
    statements, collected there), compared with its sha256, the last piece held back until
    they match."""
    digest = hashlib.sha256()
    held = b""
    at = run.start
    cuts = [(a, b, False) for a, b in run.skips]
    if diverted is not None:
        cuts += [(a, b, True) for a, b in run.owned]
    for cut_start, cut_end, divert in (*sorted(cuts), (run.end, run.end, False)):
        for piece in cursor.take(at, cut_start):
            digest.update(piece)
            if held:
                yield held
            held = piece
        taken = b"".join(cursor.take(cut_start, cut_end))
        if divert and diverted is not None:
            digest.update(taken)
            diverted.append(taken)
        at = max(at, cut_end)
    if digest.hexdigest() != run.sha256:
        raise Corrupt(
            f"the dump's bytes {run.start}-{run.end} are not the ones planned",
            f"sha256 is {digest.hexdigest()}, the signed plan says {run.sha256}",
        )
    if held:
        yield held


def _head(plan: Plan, run: Run, first: bool) -> bytes:
    if first:
        return b""
    state = "".join(line + "\n" for line in run.state)
    return (plan.preamble + state).encode()


def load_plain(
    session: Session,
    plan: Plan,
    content: Iterator[bytes],
    spool: Path | None,
    at_end: list[bytes] | None = None,
) -> None:
    """Run a plain dump's plan; Corrupt (nothing committed by the failing run) when its bytes
    differ from what was planned. An imported dump's owner statements are run at its end, or
    left in `at_end` for the caller to run after more."""
    cursor = _Cursor(content)
    last = len(plan.runs) - 1
    given = at_end is not None
    at_end = [] if at_end is None else at_end
    for index, run in enumerate(plan.runs):
        head = _head(plan, run, index == 0)
        if len(run.sha256) != 64:
            raise Corrupt("the restore plan has a run without its sha256")
        role = session.resolve(run.owner) if run.role == OWNER else run.role
        if role != ADMIN:
            owned: list[bytes] = []
            session.run_sql(LOADER, _prefixed(head, _body(cursor, run, owned)), run.owner)
            if session.bare:  # a rehearsal gives no owners
                continue
            if plan.imported:
                at_end += owned
            elif owned:
                _owners(session, plan.preamble, owned)
            continue
        with tempfile.SpooledTemporaryFile(
            SPOOL_MEMORY, dir=str(spool) if spool else None
        ) as spooled:
            for piece in _body(cursor, run, None):
                spooled.write(piece)
            if index == last:
                cursor.drain()

            def read() -> Iterator[bytes]:
                spooled.seek(0)
                return iter(lambda: spooled.read(1 << 20), b"")

            body = grants.without(read) if session.bare else read()  # no owners, no grants
            session.run_sql(ADMIN, _prefixed(head, body))
    cursor.drain()
    if at_end and not given:
        _owners(session, plan.preamble, at_end)


def load_archive(
    session: Session, chunks: Iterable[bytes], size_hint: int, imported: bool, spool: Path | None
) -> None:
    """A custom archive: staged once; its schema sections printed and run as a plain dump's
    (planned here, strictly for an import), its rows restored by pg_restore as the loader."""
    at_end: list[bytes] = []
    preamble = ""
    with session.archive(chunks, size_hint, imported) as archive:
        for section in ("pre-data", "data", "post-data"):
            if section == "data":
                archive.load_data()
                continue
            with archive.printed(section) as read:
                planner = planning.Planner(strict=imported)
                for piece in read():
                    planner.feed(piece)
                plan = planner.finish()
                preamble = plan.preamble
                load_plain(session, plan, read(), spool, at_end)
    if at_end:
        _owners(session, preamble, at_end)


def _owners(session: Session, preamble: str, statements: list[bytes]) -> None:
    """The admin gives what a loader made to the owners the dump names."""
    text = preamble.encode() + b"\n".join(statements) + b"\n"
    session.run_sql(ADMIN, iter((text,)))


def _prefixed(head: bytes, chunks: Iterator[bytes]) -> Iterator[bytes]:
    if head:
        yield head
    yield from chunks


def plain(backup: Backup) -> bool:
    return backup.format is DumpFormat.PLAIN


def recorded_plan(backup: Backup) -> Plan | None:
    return backup.manifest.plan if backup.manifest else None


def plan_of(reading: Reading) -> Plan:
    """Plan a plain dump made before plans, in one read of it (the restore reads it again, and
    its admin runs are checked against what this read found)."""
    backup = reading.backup
    planner = planning.Planner(
        strict=backup.manifest is not None and backup.manifest.origin != "dump"
    )
    for piece in reading.content():
        planner.feed(piece)
    plan = planner.finish()
    recorded = backup.manifest.restrict_key if backup.manifest else None
    if recorded is not None and planner.opening_key != recorded:
        raise Corrupt(
            "the plain dump does not open with the \\restrict line its manifest records",
            "it is not the dump that was signed",
        )
    return plan


def archive_major(backup: Backup) -> int:
    """The major of the pg_dump that wrote it (0 when unknown: an imported archive)."""
    version = backup.manifest.pg_dump_version if backup.manifest else ""
    match = re.match(r"[0-9]+", version)
    return int(match[0]) if match else 0


def compare(
    backup: Backup, actual: dict[str, int], kept: frozenset[str] = frozenset()
) -> tuple[TableComparison, ...]:
    """Every table's restored rows against the manifest (with `kept`, a table-level restore's:
    the tables left and the ones kept); RestoreFailed naming the ones off."""
    expected = backup.manifest.row_counts if backup.manifest else None
    names = set(actual) | (kept or set(expected or {}))
    tables = tuple(
        TableComparison(t, None if expected is None else expected.get(t, -1), actual.get(t, -1))
        for t in sorted(names)
    )
    wrong = [t for t in tables if not t.ok]
    if wrong:
        listed = ", ".join(f"{t.table}: {t.actual} rows, manifest {t.expected}" for t in wrong[:10])
        raise RestoreFailed(
            f"restored row counts differ from the manifest in {len(wrong)} tables", listed
        )
    return tables
