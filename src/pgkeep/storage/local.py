"""LocalStorage: backups as regular files directly inside one directory.

Writes go to `<name>.partial` (mode 0600, created exclusively), are fsynced,
then published with link+unlink so an existing backup is never overwritten,
and the directory is fsynced. Writeback starts every few MiB while writing, so
the closing fsync has little left to wait for. Reads and deletes refuse anything that is not a
regular file directly inside the directory: no symlinks, FIFOs or subdirectories.
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import fcntl
import logging
import mmap
import os
import shutil
import stat
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from pgkeep.core.models import StoredObject
from pgkeep.errors import (
    Conflict,
    InsufficientStorage,
    InvalidInput,
    NotFound,
    PgkeepError,
    StorageError,
)

logger = logging.getLogger(__name__)

PARTIAL_SUFFIX = ".partial"
TRUST_MTIME_AFTER_NS = 2_000_000_000
_NOWAIT: int | None = getattr(os, "RWF_NOWAIT", None)  # Linux 4.14+
CHUNK_SIZE = 1024 * 1024  # iter_range: verify, restore
DIRECT_BLOCK = 1024 * 1024  # O_DIRECT writes: whole, page-aligned blocks
# Without O_DIRECT, start writeback every FLUSH_AFTER bytes. Without either, a 488 MB
# dump left all its pages dirty for the final fsync: 1.16x `pg_dump -f` instead of 1.02x.
FLUSH_AFTER = 8 * 1024 * 1024
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class LocalStorage:
    def __init__(self, directory: Path) -> None:
        self.directory = directory.resolve()
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(
                f"cannot create backup directory {str(self.directory)!r}: {exc.strerror}"
            ) from exc
        if not os.access(self.directory, os.W_OK | os.X_OK):
            raise StorageError(f"backup directory {str(self.directory)!r} is not writable")

    def list(self) -> list[StoredObject]:
        try:
            entries = list(os.scandir(self.directory))
        except OSError as exc:
            raise StorageError(f"cannot list backup directory: {exc.strerror}") from exc
        found = []
        for entry in entries:
            if entry.name.endswith(PARTIAL_SUFFIX) or entry.name.startswith("."):
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue  # deleted while listing
            if stat.S_ISREG(st.st_mode):
                found.append(_info(entry.name, st))
        return found

    def open_read(self, name: str) -> LocalReadHandle:
        path = self._path(name)
        try:
            fd = os.open(path, _READ_FLAGS)
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ELOOP, errno.ENOTDIR):
                raise NotFound(f"backup {name!r} not found") from exc
            raise StorageError(f"cannot open backup {name!r}: {exc.strerror}") from exc
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise NotFound(f"backup {name!r} not found")
        return LocalReadHandle(fd, _info(name, st), f'"{st.st_size:x}-{st.st_mtime_ns:x}"')

    def open_write(self, name: str) -> LocalWriter:
        final = self._path(name)
        if final.exists() or final.is_symlink():
            raise Conflict(f"backup {name!r} already exists")
        return self._writer(name, direct=True)

    def _writer(self, name: str, *, direct: bool = False) -> LocalWriter:
        final = self._path(name)
        partial = self._path(name + PARTIAL_SUFFIX)
        try:
            fd = os.open(partial, _CREATE_FLAGS, 0o600)
        except FileExistsError as exc:
            raise Conflict(f"backup {name!r} is already being written") from exc
        except OSError as exc:
            raise StorageError(f"cannot create backup {name!r}: {exc.strerror}") from exc
        return LocalWriter(fd, partial, final, direct=direct)

    def put(self, name: str, data: bytes) -> None:
        final = self._path(name)
        with self._writer(name) as writer:
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
        _fsync_dir(self.directory)

    def remove_partials(self) -> builtins.list[str]:
        removed = []
        for entry in os.scandir(self.directory):
            if entry.name.endswith(PARTIAL_SUFFIX):
                Path(entry.path).unlink(missing_ok=True)
                removed.append(entry.name)
        return sorted(removed)

    def version(self) -> object | None:
        # Adding, removing or renaming an entry changes the directory's mtime; backups are
        # never rewritten in place. Kernel timestamps are coarse (a jiffy), so a change in
        # the same tick as the last one could keep the mtime: trust it only once it is old.
        mtime = self.directory.stat().st_mtime_ns
        if time.time_ns() - mtime < TRUST_MTIME_AFTER_NS:
            return None
        return mtime

    def free_bytes(self) -> int | None:
        return shutil.disk_usage(self.directory).free

    def _path(self, name: str) -> Path:
        """Defence in depth: the core validates names; this still refuses any path syntax."""
        if not name or "/" in name or "\\" in name or "\0" in name or name.startswith("."):
            raise InvalidInput(f"invalid object name {name[:64]!r}")
        return self.directory / name


class LocalReadHandle:
    """An open file descriptor: size and etag are those of the file that was opened."""

    def __init__(self, fd: int, info: StoredObject, etag: str) -> None:
        self._fd = fd
        self.info = info
        self.etag = etag
        self._probe = bytearray(1)
        self._nowait = _NOWAIT

    def read(self, offset: int, size: int) -> bytes:
        chunk = os.pread(self._fd, size, offset)
        if not chunk:
            raise StorageError(f"backup {self.info.name!r} shrank while being read")
        return chunk

    def read_cached(self, offset: int, size: int) -> bytes | None:
        """`read` when the page cache holds the range's last byte, else None.

        The probe is a one-byte `preadv2(RWF_NOWAIT)`, which fails rather than
        wait on the disk. Readahead fills the cache in file order, so the last
        byte stands for the range; a wrong guess costs a short wait, never wrong
        bytes. Where the kernel or filesystem lacks RWF_NOWAIT: always None.
        """
        if self._nowait is None:
            return None
        try:
            os.preadv(self._fd, [self._probe], offset + size - 1, self._nowait)
        except BlockingIOError:
            return None
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                raise
            self._nowait = None
            return None
        return self.read(offset, size)

    def iter_range(self, start: int, end: int) -> Iterator[bytes]:
        offset = start
        while offset < end:
            chunk = self.read(offset, min(CHUNK_SIZE, end - offset))
            offset += len(chunk)
            yield chunk

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class LocalWriter:
    """Writes `<name>.partial`; `commit` makes it `<name>`, anything else removes it.

    With `direct`, whole blocks go to disk with O_DIRECT from an aligned buffer:
    no copy into the page cache and no dirty pages for the closing fsync to wait
    on. Measured on a 488 MB dump: 0.07 s of system CPU instead of 0.58 s, and a
    backup that does not push the database's own pages out of the cache. Where the
    filesystem refuses O_DIRECT (tmpfs, some network filesystems) the writer goes
    through the page cache and starts writeback every FLUSH_AFTER bytes instead.
    """

    def __init__(self, fd: int, partial: Path, final: Path, *, direct: bool = False) -> None:
        self._fd = fd
        self._partial = partial
        self._final = final
        self._committed = False
        self.bytes_written = 0
        self._on_disk = 0  # written out; less than bytes_written while a block is staged
        self._flushed = 0
        self._direct = direct and _set_direct(fd, True)
        self._block = mmap.mmap(-1, DIRECT_BLOCK) if self._direct else None
        self._fill = 0

    def write(self, chunk: bytes) -> None:
        try:
            if self._block is None:
                self._write_out(memoryview(chunk))
            else:
                self._stage(memoryview(chunk))
        except OSError as exc:
            raise self._error(exc) from exc
        self.bytes_written += len(chunk)  # the size the file has once committed

    def _stage(self, view: memoryview) -> None:
        """Copy into the aligned block; write it out each time it is full."""
        assert self._block is not None  # noqa: S101 (direct mode)
        size = len(self._block)
        with memoryview(self._block) as block:
            while view:
                n = min(len(view), size - self._fill)
                block[self._fill : self._fill + n] = view[:n]
                self._fill += n
                view = view[n:]
                if self._fill == size:
                    self._write_out(block)
                    self._fill = 0

    def _write_out(self, view: memoryview) -> None:
        while view:
            try:
                written = os.write(self._fd, view)
            except OSError as exc:
                # O_DIRECT refused mid-way (say, a short write left the rest unaligned):
                # carry on through the page cache.
                if exc.errno == errno.EINVAL and self._direct and _set_direct(self._fd, False):
                    self._direct = False
                    continue
                raise
            view = view[written:]
            self._on_disk += written
        if not self._direct and self._on_disk - self._flushed >= FLUSH_AFTER:
            self._start_writeback()

    def _start_writeback(self) -> None:
        """Have the kernel start writing the last stretch to disk, without waiting for it.

        On Linux, DONTNEED starts writeback of the range's dirty pages and drops only
        pages already clean; it is advice, so a filesystem that ignores it costs nothing.
        """
        length = self._on_disk - self._flushed
        with contextlib.suppress(OSError, AttributeError):
            os.posix_fadvise(self._fd, self._flushed, length, os.POSIX_FADV_DONTNEED)
        self._flushed = self._on_disk

    def _error(self, exc: OSError) -> PgkeepError:
        if exc.errno == errno.ENOSPC:
            return InsufficientStorage(
                f"cannot write backup {self._final.name!r}: {exc.strerror}",
                "no space left in the backup directory",
            )
        return StorageError(f"cannot write backup {self._final.name!r}: {exc.strerror}")

    def _write_tail(self) -> None:
        """The last, partial block: O_DIRECT needs whole blocks, so through the page cache."""
        if self._block is None or not self._fill:
            return
        if self._direct and _set_direct(self._fd, False):
            self._direct = False
        with memoryview(self._block) as block:
            self._write_out(block[: self._fill])
        self._fill = 0

    def commit(self, *, replace: bool = False) -> None:
        try:
            self._write_tail()
        except OSError as exc:
            raise self._error(exc) from exc
        try:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = -1
            if replace:
                self._partial.replace(self._final)
            else:
                os.link(self._partial, self._final)  # fails rather than replace an existing file
                self._partial.unlink()
            _fsync_dir(self._final.parent)
        except FileExistsError as exc:
            raise Conflict(f"backup {self._final.name!r} already exists") from exc
        except OSError as exc:
            raise StorageError(f"cannot save backup {self._final.name!r}: {exc.strerror}") from exc
        self._committed = True

    def __enter__(self) -> LocalWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        # Not closed outright: a traceback in flight may still hold views of it.
        self._block = None
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if not self._committed:
            self._partial.unlink(missing_ok=True)


def _set_direct(fd: int, on: bool) -> bool:
    """Turn O_DIRECT on or off for an open file; False where the filesystem refuses."""
    direct = getattr(os, "O_DIRECT", 0)
    if not direct:
        return False
    try:
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        fcntl.fcntl(fd, fcntl.F_SETFL, flags | direct if on else flags & ~direct)
    except OSError:
        return False
    return True


def _info(name: str, st: os.stat_result) -> StoredObject:
    modified = datetime.fromtimestamp(st.st_mtime_ns / 1e9, UTC)
    return StoredObject(name=name, size_bytes=st.st_size, modified_at=modified)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
