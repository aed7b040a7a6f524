"""The audit log: append-only JSON lines in a keyed hash chain, its head anchored elsewhere.

Each entry carries `seq`, the `prev` entry's hash and its own `hash`, an
HMAC-SHA256 (key derived from the signing key, named by `keyId`), so a log
rewritten from scratch with recomputed hashes fails to verify without the key.
The newest (seq, hash) is also kept by an `Anchor` outside the file (the control
database), so cutting lines off the end, or deleting the file, is detected. A
line torn by a crash is fenced at the next append (a newline, then an entry
naming it) and reported, never fatal. Appends take an exclusive lock on the
file, so the CLI and the server share one chain; symlinks are never followed.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import stat
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from pgkeep.core.events import Event
from pgkeep.core.signing import Signer, Verdict
from pgkeep.errors import PgkeepError, StorageError

logger = logging.getLogger(__name__)

GENESIS = "0" * 64
TORN = "audit-torn-line"
_TAIL_BYTES = 64 * 1024
_OPEN_FLAGS = os.O_NOFOLLOW | os.O_CLOEXEC


class Anchor(Protocol):
    """Where the chain's head is kept, away from the file."""

    def load(self) -> tuple[int, str] | None: ...

    def save(self, seq: int, digest: str) -> None: ...


class Trail(Protocol):
    """An audit trail: a file (`AuditLog`) or rows of the control database shared by
    instances (`postgres.audit_trail.PgAuditTrail`); both hold the same keyed chain."""

    signer: Signer
    anchor: Anchor | None

    @property
    def where(self) -> str: ...

    def on_event(self, event: Event) -> None: ...

    def append(self, **fields: Any) -> None: ...

    def read(self) -> list[dict[str, Any]]: ...

    def page(self, offset: int, limit: int) -> tuple[list[dict[str, Any]], int]:
        """Entries newest first, `limit` of them after skipping `offset`, and how many
        there are in all; never the whole trail in memory."""
        ...


def event_fields(event: Event) -> dict[str, Any]:
    """A core event as an audit entry's fields."""
    return {
        "at": event.at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "who": event.actor.who,
        "via": event.actor.via,
        "source": event.actor.source,
        "action": event.action,
        "target": event.target,
        "backup": event.filename,
        "result": event.outcome,
        "error": event.error[:500],
        "request_id": event.actor.request_id,
        **({"store": event.store} if event.store else {}),
    }


def parsed(raw: str | bytes, where: int) -> dict[str, Any]:
    """An entry as stored; one that is not an entry as `{"_unreadable": where}` (its line
    number, or its row's seq)."""
    try:
        entry = json.loads(raw)
    except ValueError:
        return {"_unreadable": where}
    return entry if isinstance(entry, dict) else {"_unreadable": where}


def chained(signer: Signer, seq: int, prev: str, fields: dict[str, Any]) -> dict[str, Any]:
    """The entry after (seq, prev): numbered, linked and keyed."""
    entry: dict[str, Any] = {"seq": seq + 1, **fields, "prev": prev}
    signature = signer.sign(entry)  # over everything but keyId and hash, added now
    entry["keyId"], entry["hash"] = signature["keyId"], signature["hmac"]
    return entry


@dataclass
class _Head:
    seq: int
    digest: str
    torn: bool = False  # the file ends in a line that is not a whole entry


class AuditLog:
    def __init__(self, path: Path, signer: Signer, anchor: Anchor | None = None) -> None:
        self.path = path
        self.signer = signer
        self.anchor = anchor
        self._lock = threading.Lock()

    @property
    def where(self) -> str:
        return str(self.path)

    def on_event(self, event: Event) -> None:
        """A listener of core events: every action, from every entry point."""
        self.append(**event_fields(event))

    def append(self, **fields: Any) -> None:
        with self._lock:
            fd = self._open(os.O_RDWR | os.O_APPEND | os.O_CREAT)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                head = self._head(fd)
                if head.torn:
                    os.write(fd, b"\n")
                    head = self._write(
                        fd, head, action=TORN, details=f"a line after seq {head.seq} was torn"
                    )
                entry_head = self._write(fd, head, **fields)
            except OSError as exc:
                raise StorageError(f"cannot append to the audit log: {exc.strerror}") from exc
            finally:
                os.close(fd)
        self._save_anchor(entry_head)

    def _write(self, fd: int, head: _Head, **fields: Any) -> _Head:
        entry = chained(self.signer, head.seq, head.digest, fields)
        line = (json.dumps(entry, sort_keys=True, ensure_ascii=True) + "\n").encode()
        os.write(fd, line)
        os.fsync(fd)
        return _Head(entry["seq"], entry["hash"])

    def _head(self, fd: int) -> _Head:
        """The newest entry's seq and hash, from the file's tail, or from the anchor when the
        file is new (so a deleted log continues its chain and the gap stays visible)."""
        size = os.fstat(fd).st_size
        if size == 0:
            anchored = self._load_anchor()
            if anchored is not None:
                logger.error(
                    "audit log %s is empty but its anchor records %d entries: it was "
                    "deleted or emptied; continuing the chain after them",
                    self.path,
                    anchored[0],
                )
                return _Head(anchored[0], anchored[1])
            return _Head(0, GENESIS)
        start = max(0, size - _TAIL_BYTES)
        tail = os.pread(fd, size - start, start)
        torn = not tail.endswith(b"\n")
        lines = tail.split(b"\n")
        for line in reversed(lines[:-1]):  # the last element: "" or the torn fragment
            try:
                entry = json.loads(line)
                return _Head(int(entry["seq"]), str(entry["hash"]), torn)
            except (ValueError, KeyError, TypeError):
                torn = True  # an unreadable last line: fence it too
        return _Head(0, GENESIS, torn)

    def _open(self, flags: int) -> int:
        if flags & os.O_CREAT:
            with contextlib.suppress(OSError):  # opening says why, if this did not work
                self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            fd = os.open(self.path, flags | _OPEN_FLAGS, 0o600)
        except OSError as exc:
            raise StorageError(
                f"cannot open the audit log {str(self.path)!r}: {exc.strerror}",
                "it must be a regular file, not a symlink",
            ) from exc
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
            os.close(fd)
            raise StorageError(f"the audit log {str(self.path)!r} is not a plain regular file")
        return fd

    def _load_anchor(self) -> tuple[int, str] | None:
        if self.anchor is None:
            return None
        try:
            return self.anchor.load()
        except PgkeepError as exc:
            logger.warning("audit anchor unavailable: %s", exc.message)
            return None

    def _save_anchor(self, head: _Head) -> None:
        if self.anchor is None:
            return
        try:
            self.anchor.save(head.seq, head.digest)
        except PgkeepError as exc:
            logger.warning("audit anchor not updated: %s", exc.message)

    def read(self) -> list[dict[str, Any]]:
        """Every line, parsed; an unreadable one as `{"_unreadable": line number}`."""
        try:
            fd = self._open(os.O_RDONLY)
        except StorageError:
            if not self.path.exists() and not self.path.is_symlink():
                return []
            raise
        with os.fdopen(fd, "rb") as handle:
            text = handle.read()
        lines = enumerate(text.split(b"\n"), 1)
        return [parsed(line, number) for number, line in lines if line]

    def page(self, offset: int, limit: int) -> tuple[list[dict[str, Any]], int]:
        try:
            fd = self._open(os.O_RDONLY)
        except StorageError:
            if not self.path.exists() and not self.path.is_symlink():
                return [], 0
            raise
        with os.fdopen(fd, "rb") as handle:
            total = sum(1 for line in handle if line.strip())
            # Entries `first` up to `last` (0-based, oldest first) are the page, newest first.
            last, first = total - offset, max(0, total - offset - limit)
            handle.seek(0)
            window, index = [], 0
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                if first <= index < last:
                    window.append(parsed(line, number))
                index += 1
        return list(reversed(window)), total


@dataclass(frozen=True)
class Report:
    intact: bool
    entries: int
    problem: str = ""
    notes: tuple[str, ...] = ()


def verify(log: Trail, signer: Signer, anchor: Anchor | None) -> Report:
    """Recompute the keyed chain, and compare its head with the anchor."""
    entries = log.read()
    notes: list[str] = []
    previous_seq, previous = 0, GENESIS
    for index, entry in enumerate(entries):
        if "_unreadable" in entry:
            fenced = index + 1 < len(entries) and entries[index + 1].get("action") == TORN
            if not fenced:
                return Report(False, len(entries), f"line {entry['_unreadable']}: not an entry")
            notes.append(f"line {entry['_unreadable']}: torn by a crash, fenced")
            continue
        problem = _check(entry, signer, previous_seq, previous)
        if problem and previous_seq == 0 and isinstance(entry.get("seq"), int) and entry["seq"] > 1:
            problem = f"entries 1 to {entry['seq'] - 1} are missing: the log was deleted or emptied"
        if problem:
            return Report(False, len(entries), f"seq {entry.get('seq')}: {problem}", tuple(notes))
        previous_seq, previous = int(entry["seq"]), str(entry["hash"])
    head = anchor.load() if anchor is not None else None
    if head is not None and head[0] > previous_seq:
        return Report(
            False,
            len(entries),
            f"the anchor records {head[0]} entries but the log ends at {previous_seq}: "
            "lines were cut off the end",
            tuple(notes),
        )
    if head is not None:
        match = next((e for e in entries if e.get("seq") == head[0]), None)
        if match is None or match.get("hash") != head[1]:
            return Report(
                False, len(entries), f"seq {head[0]} differs from the anchor", tuple(notes)
            )
    return Report(True, len(entries), "", tuple(notes))


def _check(entry: dict[str, Any], signer: Signer, previous_seq: int, previous: object) -> str:
    if entry.get("seq") != previous_seq + 1 or entry.get("prev") != previous:
        return "chain broken (an entry removed, added or reordered)"
    body = {k: v for k, v in entry.items() if k not in ("hash", "keyId")}
    verdict = signer.check(body, {"keyId": entry.get("keyId"), "hmac": entry.get("hash")})
    if verdict is Verdict.UNKNOWN_KEY:
        return "signed with a key this service does not have"
    if verdict is not Verdict.GOOD:
        return "content does not match its hash (edited, or forged without the key)"
    return ""
