"""LocalStorage's own hazards: symlinks, FIFOs, subdirectories, modes, crash leftovers."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import random
import stat
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pgkeep.core.catalog import Catalog
from pgkeep.core.events import Events
from pgkeep.core.manifests import ManifestStore
from pgkeep.core.retention import RetentionPolicy
from pgkeep.core.signing import Signer
from pgkeep.errors import ConfigError, InvalidInput, NotFound, StorageError
from pgkeep.storage import LocalStorage

NAME = "backup-2024-12-09T10-30-45.sql"


def test_local_creates_private_directory_and_files(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "new" / "dir")
    assert stat.S_IMODE((tmp_path / "new" / "dir").stat().st_mode) == 0o700
    with storage.open_write(NAME) as writer:
        partial = tmp_path / "new" / "dir" / (NAME + ".partial")
        assert stat.S_IMODE(partial.stat().st_mode) == 0o600
        writer.write(b"x")
        writer.commit()
    assert not partial.exists()
    assert stat.S_IMODE((tmp_path / "new" / "dir" / NAME).stat().st_mode) == 0o600


def test_local_never_lists_or_reads_symlinks_fifos_or_directories(tmp_path: Path) -> None:
    outside = tmp_path / "secret.txt"
    outside.write_text("not yours")
    storage = LocalStorage(tmp_path / "b")
    (tmp_path / "b" / NAME).symlink_to(outside)
    os.mkfifo(tmp_path / "b" / "backup-2024-12-09T10-30-46.sql")
    (tmp_path / "b" / "backup-2024-12-09T10-30-47.sql").mkdir()
    (tmp_path / "b" / "backup-2024-12-09T10-30-48.sql.partial").write_text("half")
    assert storage.list() == []
    for name in (NAME, "backup-2024-12-09T10-30-46.sql", "backup-2024-12-09T10-30-47.sql"):
        with pytest.raises(NotFound):
            storage.open_read(name)  # the FIFO must not block: O_NONBLOCK, then refused
        with pytest.raises(NotFound):
            storage.delete(name)
    assert outside.read_text() == "not yours"


def test_local_refuses_path_syntax_in_names(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "b")
    for name in ("../x", "a/b", "..", ".hidden", "a\\b", "a\x00b", ""):
        with pytest.raises(InvalidInput):
            storage.open_read(name)


def test_local_remove_partials_removes_only_partials(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "b")
    (tmp_path / "b" / (NAME + ".partial")).write_text("crashed")
    (tmp_path / "b" / NAME).write_text("good")
    assert storage.remove_partials() == [NAME + ".partial"]
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == [NAME]


def test_a_young_partial_is_kept_unless_its_writer_is_known_dead(tmp_path: Path) -> None:
    """A partial younger than the sweep's horizon may be another process's create not yet
    on the board: kept. One whose job was failed because its process stopped is not."""
    storage = LocalStorage(tmp_path / "b")
    (tmp_path / "b" / (NAME + ".partial")).write_text("killed")
    assert storage.remove_partials(older_than=60) == []
    assert storage.remove_partials(older_than=60, dead=frozenset({NAME})) == [NAME + ".partial"]


def test_local_unwritable_directory_is_refused(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StorageError, match="cannot create backup directory"):
        LocalStorage(blocker / "sub")
    assert not issubclass(StorageError, ConfigError)


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tiny tmpfs needs root")
def test_local_disk_full_raises_and_leaves_no_partial(tmp_path: Path) -> None:
    mount = tmp_path / "tiny"
    mount.mkdir()
    if os.system(f"mount -t tmpfs -o size=256k,mode=0700 tmpfs {mount} 2>/dev/null") != 0:  # noqa: S605
        pytest.skip("this sandbox does not allow mounting tmpfs")
    try:
        storage = LocalStorage(mount)

        def fill() -> None:
            with storage.open_write(NAME) as writer:
                for _ in range(100):
                    writer.write(b"x" * 65536)

        with pytest.raises(StorageError, match="No space left") as caught:
            fill()
        assert caught.value.details == "no space left in the backup directory"
        assert list(mount.iterdir()) == []
    finally:
        os.system(f"umount {mount}")  # noqa: S605


def _open_flags(path: Path) -> int:
    """The flags of this process's descriptor open on `path`, as the kernel reports them."""
    for link in Path("/proc/self/fd").iterdir():
        with contextlib.suppress(OSError):
            if link.readlink() == path:
                for line in Path(f"/proc/self/fdinfo/{link.name}").read_text().splitlines():
                    if line.startswith("flags:"):
                        return int(line.split()[1], 8)
    raise AssertionError(f"no descriptor open on {path}")


def test_local_backups_are_written_with_direct_io_byte_for_byte(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "b")
    rng = random.Random(3)
    data = rng.randbytes(3 * 1024 * 1024 + 12345)  # whole blocks, then a tail
    with storage.open_write(NAME) as writer:
        offset = 0
        while offset < len(data):
            size = rng.choice((1, 4096, 65536, 300_000, 1 << 20, 3 << 20))
            writer.write(data[offset : offset + size])
            offset += size
        assert _open_flags(tmp_path / "b" / (NAME + ".partial")) & os.O_DIRECT
        assert writer.bytes_written == len(data)  # the tail too, though still staged
        writer.commit()
    assert writer.bytes_written == len(data)
    assert (tmp_path / "b" / NAME).read_bytes() == data


def test_local_read_cached_answers_only_from_the_page_cache(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "b")
    data = random.Random(4).randbytes(2 * 1024 * 1024)
    with storage.open_write(NAME) as writer:
        writer.write(data)
        writer.commit()
    handle = storage.open_read(NAME)
    try:
        # Clean pages are evicted by DONTNEED; pages still under writeback are not (seen on
        # a loaded CI machine), so evict until the kernel has let them go.
        for _ in range(50):
            with (tmp_path / "b" / NAME).open("rb") as f:
                os.fsync(f.fileno())
                os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
            if handle.read_cached(0, 1 << 20) is None:  # would wait on the disk
                break
            time.sleep(0.1)
        else:
            raise AssertionError("never evicted, or read_cached answers for pages not cached")
        assert handle.read(0, 1 << 20) == data[: 1 << 20]  # waits, and fills the cache
        assert handle.read_cached(0, 1 << 20) == data[: 1 << 20]
        assert handle.read_cached(1 << 20, 1 << 20) in (None, data[1 << 20 :])  # readahead
        assert handle.read(len(data) - 10, 100) == data[-10:]
        with pytest.raises(StorageError, match="shrank"):
            handle.read(len(data), 100)
    finally:
        handle.close()


def test_local_warm_brings_a_range_into_the_page_cache_for_sendfile(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "b")
    data = random.Random(5).randbytes(3 * 1024 * 1024)
    with storage.open_write(NAME) as writer:
        writer.write(data)
        writer.commit()
    handle = storage.open_read(NAME)
    try:
        for _ in range(50):  # as above: evict until the kernel has let the pages go
            os.posix_fadvise(handle.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
            if not handle.cached(0, len(data)):
                break
            time.sleep(0.1)
        else:
            raise AssertionError("never evicted, or cached() answers for pages not cached")
        handle.warm(1024 * 1024, 2 * 1024 * 1024)
        assert handle.cached(1024 * 1024, 2 * 1024 * 1024)
        assert os.pread(handle.fileno(), 10, len(data) - 10) == data[-10:]
    finally:
        handle.close()


def test_local_direct_io_refused_mid_write_falls_back_to_the_page_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fault injection at the system call: the kernel answers EINVAL to an O_DIRECT write."""
    real_write = os.write
    refused = []

    def write(fd: int, data: bytes | memoryview) -> int:
        if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT:
            refused.append(fd)
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_write(fd, data)

    storage = LocalStorage(tmp_path / "b")
    data = random.Random(4).randbytes(5 * 1024 * 1024 + 7)
    with storage.open_write(NAME) as writer:
        monkeypatch.setattr(os, "write", write)
        writer.write(data)
        assert not _open_flags(tmp_path / "b" / (NAME + ".partial")) & os.O_DIRECT
        writer.commit()
    assert len(refused) == 1
    assert (tmp_path / "b" / NAME).read_bytes() == data


def test_local_version_is_withheld_while_the_directory_is_fresh(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "b")
    assert storage.version() is None  # just changed: mtime too coarse to trust yet
    old = time.time() - 10
    os.utime(tmp_path / "b", (old, old))
    token = storage.version()
    assert token is not None
    assert storage.version() == token
    (tmp_path / "b" / NAME).write_text("x")
    assert storage.version() != token


def test_catalog_list_cache_sees_every_change(tmp_path: Path) -> None:
    directory = tmp_path / "b"
    storage = LocalStorage(directory)
    clock = lambda: datetime.now(UTC)  # noqa: E731
    manifests = ManifestStore(storage, Signer(b"s" * 32))
    service = Catalog("db", "db", storage, manifests, Events(clock), RetentionPolicy(), clock)
    (directory / NAME).write_text("x")

    def age() -> None:
        old = time.time() - 10
        os.utime(directory, (old, old))

    age()
    first = service.list()
    assert service.list() is first  # cached while nothing changed
    (directory / "backup-2024-12-09T10-30-46.sql").write_text("y")
    second = service.list()
    assert [b.name for b in second] == ["backup-2024-12-09T10-30-46.sql", NAME]
    age()
    (directory / NAME).unlink()
    assert [b.name for b in service.list()] == ["backup-2024-12-09T10-30-46.sql"]
