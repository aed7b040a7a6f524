"""The audit log's file store: append-only JSON lines of the keyed chain (core/audit.py),
its head anchored elsewhere (the control database).

A line torn by a crash is fenced at the next append (a newline, then an entry naming
it) and reported, never fatal; an append that fails (a full disk) is cut off again and
raises, so the action it records is refused (`core.events`). Appends take an exclusive
lock on the file, so the CLI and the server share one chain; symlinks are never
followed.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import stat
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pgkeep.core.audit import GENESIS, TORN, Anchor, chained, event_fields, parsed
from pgkeep.core.events import Event
from pgkeep.core.signing import Signer
from pgkeep.errors import PgkeepError, StorageError

logger = logging.getLogger(__name__)

_TAIL_BYTES = 64 * 1024
_OPEN_FLAGS = os.O_NOFOLLOW | os.O_CLOEXEC


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
        """Append one entry, fsynced; StorageError if it could not be, the file left as it
        was (a full disk leaves no torn line behind)."""
        with self._lock:
            fd = self._open(os.O_RDWR | os.O_APPEND | os.O_CREAT)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                entry_head = self._append(fd, fields)
            except OSError as exc:
                raise StorageError(
                    f"cannot write the audit trail: {exc.strerror or exc}",
                    f"appending to {str(self.path)!r}",
                ) from exc
            finally:
                os.close(fd)
        self._save_anchor(entry_head)

    def _append(self, fd: int, fields: dict[str, Any]) -> _Head:
        size = os.fstat(fd).st_size
        try:
            head = self._head(fd)
            if head.torn:
                _write_all(fd, b"\n")
                head = self._write(
                    fd, head, action=TORN, details=f"a line after seq {head.seq} was torn"
                )
            return self._write(fd, head, **fields)
        except OSError:
            with contextlib.suppress(OSError):  # freeing blocks works on a full disk
                os.ftruncate(fd, size)
            raise

    def _write(self, fd: int, head: _Head, **fields: Any) -> _Head:
        entry = chained(self.signer, head.seq, head.digest, fields)
        _write_all(fd, (json.dumps(entry, sort_keys=True, ensure_ascii=True) + "\n").encode())
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


def _write_all(fd: int, data: bytes) -> None:
    """Write all of `data`: a full disk makes write() short before it fails."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written == 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        view = view[written:]
