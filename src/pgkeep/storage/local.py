"""LocalStorage: backups as regular files directly inside one directory.

Writes go to `<name>.partial` (mode 0600, created exclusively), are fsynced,
then published with link+unlink so an existing backup is never overwritten,
and the directory is fsynced. Writeback starts every few MiB while writing, so
the closing fsync has little left to wait for. Reads and deletes refuse anything that is not a
regular file directly inside the directory: no symlinks, FIFOs or subdirectories, and
no file with a second hard link (one that could be a file from elsewhere on the
machine). A world-writable directory is refused: anyone could plant files in it.
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import logging
import os
import secrets
import shutil
import stat
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from pgkeep.core.models import Features, StoredObject
from pgkeep.errors import (
    Conflict,
    InvalidInput,
    NotFound,
    StorageError,
)
from pgkeep.storage.chunks import read_range
from pgkeep.storage.local_write import LocalWriter, fsync_dir
from pgkeep.storage.meter import READS

logger = logging.getLogger(__name__)

PARTIAL_SUFFIX = ".partial"
TRUST_MTIME_AFTER_NS = 2_000_000_000
_NOWAIT: int | None = getattr(os, "RWF_NOWAIT", None)  # Linux 4.14+
_WARM_BYTES = 256 * 1024
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


PROBE = "pgkeep-ready-probe-"


class LocalStorage:
    features = Features(free_space=True, page_cache=True)

    def __init__(self, directory: Path) -> None:
        self.directory = directory.resolve()
        self.where = str(self.directory)
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(
                f"cannot create backup directory {str(self.directory)!r}: {exc.strerror}"
            ) from exc
        if not os.access(self.directory, os.W_OK | os.X_OK):
            raise StorageError(f"backup directory {str(self.directory)!r} is not writable")
        mode = stat.S_IMODE(self.directory.stat().st_mode)
        if mode & stat.S_IWOTH:
            raise StorageError(
                f"backup directory {str(self.directory)!r} is world-writable (mode {mode:04o}): "
                "anyone on this machine could plant or replace files in it; chmod 700 it"
            )
        if mode & stat.S_IWGRP:
            logger.warning(
                "backup directory %s is group-writable (mode %04o); 0700 is safer",
                self.directory,
                mode,
            )

    def list(self) -> list[StoredObject]:
        entries = self._scan()
        found = []
        for entry in entries:
            if entry.name.endswith(PARTIAL_SUFFIX) or entry.name.startswith("."):
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue  # deleted while listing
            if stat.S_ISREG(st.st_mode) and st.st_nlink == 1:
                found.append(_info(entry.name, st))
        return found

    def open_read(self, name: str, listed: StoredObject | None = None) -> LocalReadHandle:
        path = self._path(name)
        try:
            fd = os.open(path, _READ_FLAGS)
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ELOOP, errno.ENOTDIR):
                raise NotFound(f"backup {name!r} not found") from exc
            raise StorageError(f"cannot open backup {name!r}: {exc.strerror}") from exc
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
            os.close(fd)
            why = (
                "it is not a regular file"
                if not stat.S_ISREG(st.st_mode)
                else (f"it has {st.st_nlink} hard links, so it may be a file from elsewhere")
            )
            raise NotFound(f"backup {name!r} not found", f"refused: {why}")
        return LocalReadHandle(fd, _info(name, st), _etag(st), self.where)

    def open_write(self, name: str) -> LocalWriter:
        final = self._path(name)
        if final.exists() or final.is_symlink():
            raise Conflict(f"backup {name!r} already exists")
        return self._writer(name, direct=True)

    def _writer(self, name: str, *, direct: bool = False, unique: bool = False) -> LocalWriter:
        """A writer of `<name>.partial`, or with `unique` of `<name>.<random>.partial`, so that
        concurrent `put`s of one name each write their own and the last rename wins."""
        final = self._path(name)
        tag = f".{secrets.token_hex(6)}" if unique else ""
        partial = self._path(name + tag + PARTIAL_SUFFIX)
        try:
            fd = os.open(partial, _CREATE_FLAGS, 0o600)
        except FileExistsError as exc:
            raise Conflict(f"backup {name!r} is already being written") from exc
        except OSError as exc:
            raise StorageError(f"cannot create backup {name!r}: {exc.strerror}") from exc
        return LocalWriter(fd, partial, final, direct=direct)

    def put(self, name: str, data: bytes) -> None:
        final = self._path(name)
        with self._writer(name, unique=True) as writer:
            writer.write(data)
            writer.commit(replace=True)
        logger.debug("stored %s (%d bytes)", final.name, len(data))

    def delete(self, name: str) -> None:
        path = self._path(name)
        try:
            st = path.lstat()
            if not stat.S_ISREG(st.st_mode):
                raise NotFound(f"backup {name!r} not found")
            path.unlink()
        except FileNotFoundError as exc:
            raise NotFound(f"backup {name!r} not found") from exc
        except OSError as exc:
            raise StorageError(f"cannot delete backup {name!r}: {exc.strerror}") from exc
        fsync_dir(self.directory)

    def remove_partials(
        self,
        keep: frozenset[str] = frozenset(),
        older_than: float = 0.0,
        dead: frozenset[str] = frozenset(),
    ) -> builtins.list[str]:
        removed = []
        horizon = time.time() - older_than
        for entry in self._scan():
            if not entry.name.endswith(PARTIAL_SUFFIX):
                continue
            written = entry.name[: -len(PARTIAL_SUFFIX)]  # NAME, or NAME.TAG for a unique put
            if any(written == k or written.startswith(k + ".") for k in keep):
                continue
            with contextlib.suppress(FileNotFoundError):
                young = entry.stat(follow_symlinks=False).st_mtime > horizon
                if older_than and young and written not in dead:
                    continue
                Path(entry.path).unlink(missing_ok=True)
                removed.append(entry.name)
        return sorted(removed)

    def changed_elsewhere(self) -> None:
        pass  # the version is read from the store itself each time

    def version(self) -> object | None:
        # Adding, removing or renaming an entry changes the directory's mtime; backups are
        # never rewritten in place. Kernel timestamps are coarse (a jiffy), so a change in
        # the same tick as the last one could keep the mtime: trust it only once it is old.
        try:
            mtime = self.directory.stat().st_mtime_ns
        except OSError as exc:
            raise self._gone(exc) from exc
        if time.time_ns() - mtime < TRUST_MTIME_AFTER_NS:
            return None
        return mtime

    def free_bytes(self) -> int | None:
        try:
            return shutil.disk_usage(self.directory).free
        except OSError as exc:
            raise self._gone(exc) from exc

    def _scan(self) -> builtins.list[os.DirEntry[str]]:
        try:
            return builtins.list(os.scandir(self.directory))
        except OSError as exc:
            raise self._gone(exc) from exc

    def _gone(self, exc: OSError) -> StorageError:
        """The directory itself cannot be read (removed, unmounted, a dangling link)."""
        return StorageError(f"cannot read backup directory {self.where!r}: {exc.strerror}")

    def check(self) -> str:
        probe = PROBE + secrets.token_hex(8)  # concurrent checks never share a name
        self.put(probe, b"ok")
        self.delete(probe)
        return "writable"

    def _path(self, name: str) -> Path:
        """Defence in depth: the core validates names; this still refuses any path syntax."""
        if not name or "/" in name or "\\" in name or "\0" in name or name.startswith("."):
            raise InvalidInput(f"invalid object name {name[:64]!r}")
        return self.directory / name


class LocalReadHandle:
    """An open file descriptor: size and etag are those of the file that was opened."""

    def __init__(self, fd: int, info: StoredObject, etag: str, store: str = "") -> None:
        self._fd = fd
        self.info = info
        self.etag = etag
        self.store = store  # counted by storage.meter
        self._probe = bytearray(1)
        self._nowait = _NOWAIT

    def read(self, offset: int, size: int) -> bytes:
        chunk = os.pread(self._fd, size, offset)
        if not chunk:
            raise StorageError(f"backup {self.info.name!r} shrank while being read")
        READS.count(self.store, len(chunk))
        return chunk

    def read_cached(self, offset: int, size: int) -> bytes | None:
        """`read` when the page cache holds the range's last byte, else None."""
        return self.read(offset, size) if self.cached(offset, size) else None

    def cached(self, offset: int, size: int) -> bool:
        """Whether the page cache holds the range (its last byte, at least).

        The probe is a one-byte `preadv2(RWF_NOWAIT)`, which fails rather than
        wait on the disk. Readahead fills the cache in file order, so the last
        byte stands for the range; a wrong guess costs a short wait, never wrong
        bytes. Where the kernel or filesystem lacks RWF_NOWAIT: always False.
        """
        if self._nowait is None:
            return False
        try:
            os.preadv(self._fd, [self._probe], offset + size - 1, self._nowait)
        except BlockingIOError:
            return False
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                raise
            self._nowait = None
            return False
        return True

    def warm(self, offset: int, size: int) -> None:
        """Bring the range into the page cache (waiting on the disk), keeping none of it."""
        scratch = bytearray(_WARM_BYTES)
        end = offset + size
        while offset < end:
            view = memoryview(scratch)[: min(_WARM_BYTES, end - offset)]
            got = os.preadv(self._fd, [view], offset)
            if got == 0:
                return
            offset += got

    def fileno(self) -> int:
        """The open file, for the server to send from (`http.zerocopy`); valid until `close`."""
        return self._fd

    def iter_range(self, start: int, end: int) -> Iterator[bytes]:
        return read_range(self.read, start, end)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _info(name: str, st: os.stat_result) -> StoredObject:
    modified = datetime.fromtimestamp(st.st_mtime_ns / 1e9, UTC)
    return StoredObject(name, st.st_size, modified, _etag(st))


def _etag(st: os.stat_result) -> str:
    """Changes with the file's bytes, and with the file: a file renamed into its place has
    another inode, and one written in place a new ctime (which no utime() can set back)."""
    return f'"{st.st_ino:x}-{st.st_size:x}-{st.st_mtime_ns:x}-{st.st_ctime_ns:x}"'
