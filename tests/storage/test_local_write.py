"""LocalWriter on its own: what reaches the disk and in which order. The system calls are
wrapped (each wrapper makes the real call, then records it), so the order is the kernel's."""

from __future__ import annotations

import errno
import fcntl
import os
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pgkeep.errors import Conflict, InsufficientStorage, StorageError
from pgkeep.storage import local_write
from pgkeep.storage.local_write import DIRECT_BLOCK, FLUSH_AFTER, LocalWriter, fsync_dir

NAME = "backup-2024-12-09T10-30-45.sql"
Calls = list[tuple[str, str]]


def _path_of(fd: int) -> str:
    return str(Path(f"/proc/self/fd/{fd}").readlink())


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Calls:
    """Every fsync, link, replace, unlink and close, naming what it was made on."""
    recorded: Calls = []

    def wrap(name: str, describe: Callable[..., str]) -> None:
        real = getattr(os, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            recorded.append((name, describe(*args)))  # a call that fails is a call too
            return real(*args, **kwargs)

        monkeypatch.setattr(os, name, call)

    wrap("fsync", _path_of)
    wrap("close", _path_of)
    wrap("link", lambda src, dst, *a: f"{src} -> {dst}")
    wrap("replace", lambda src, dst, *a: f"{src} -> {dst}")
    wrap("unlink", lambda path, *a: str(path))
    return recorded


def _writer(directory: Path, *, direct: bool = False, name: str = NAME) -> LocalWriter:
    partial, final = directory / (name + ".partial"), directory / name
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    return LocalWriter(fd, partial, final, direct=direct)


def test_the_file_is_on_disk_before_its_name_and_its_name_before_the_commit_returns(
    tmp_path: Path, calls: Calls
) -> None:
    partial, final = tmp_path / (NAME + ".partial"), tmp_path / NAME
    with _writer(tmp_path) as writer:
        writer.write(b"rows")
        writer.commit()
    assert calls == [
        ("fsync", str(partial)),  # the bytes, before any name points at them
        ("close", str(partial)),
        ("link", f"{partial} -> {final}"),  # never over an existing file
        ("unlink", str(partial)),
        ("fsync", str(tmp_path)),  # the directory: the new name survives a crash
        ("close", str(tmp_path)),
    ]
    assert final.read_bytes() == b"rows"


def test_a_replacing_commit_renames_after_the_fsync_then_syncs_the_directory(
    tmp_path: Path, calls: Calls
) -> None:
    partial, final = tmp_path / (NAME + ".partial"), tmp_path / NAME
    final.write_bytes(b"old")
    with _writer(tmp_path) as writer:
        writer.write(b"new")
        writer.commit(replace=True)
    assert calls == [
        ("fsync", str(partial)),
        ("close", str(partial)),
        ("replace", f"{partial} -> {final}"),
        ("fsync", str(tmp_path)),
        ("close", str(tmp_path)),
    ]
    assert final.read_bytes() == b"new"


def test_fsync_dir_syncs_the_directory_and_closes_it(tmp_path: Path, calls: Calls) -> None:
    fsync_dir(tmp_path)
    assert calls == [("fsync", str(tmp_path)), ("close", str(tmp_path))]
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(NotADirectoryError):
        fsync_dir(tmp_path / "file")


def test_a_writer_goes_through_the_page_cache_unless_told_otherwise(tmp_path: Path) -> None:
    partial = tmp_path / (NAME + ".partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with LocalWriter(fd, partial, tmp_path / NAME) as writer:
        assert not fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT
        writer.write(b"x")
        writer.commit()


def test_a_commit_never_replaces_a_backup_of_the_same_name(tmp_path: Path) -> None:
    (tmp_path / NAME).write_bytes(b"first")
    with _writer(tmp_path) as writer:
        writer.write(b"second")
        with pytest.raises(Conflict, match=f"^backup {NAME!r} already exists$"):
            writer.commit()
    assert (tmp_path / NAME).read_bytes() == b"first"
    assert sorted(p.name for p in tmp_path.iterdir()) == [NAME]


def test_leaving_without_a_commit_removes_the_partial_and_closes_it(
    tmp_path: Path, calls: Calls
) -> None:
    with _writer(tmp_path) as writer:
        writer.write(b"half")
    assert list(tmp_path.iterdir()) == []
    assert ("close", str(tmp_path / (NAME + ".partial"))) in calls
    with _writer(tmp_path) as writer:
        writer.write(b"whole")
        writer.commit()
    assert [p.name for p in tmp_path.iterdir()] == [NAME]  # committed: kept


def test_a_commit_that_cannot_save_says_so(tmp_path: Path) -> None:
    writer = _writer(tmp_path)
    writer.write(b"x")
    (tmp_path / (NAME + ".partial")).unlink()  # gone from under it
    with pytest.raises(StorageError) as caught:
        writer.commit()
    assert caught.value.message == f"cannot save backup {NAME!r}: No such file or directory"
    writer.__exit__(None, None, None)


def test_direct_writes_go_out_in_whole_aligned_blocks_then_the_tail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write = os.write
    written: list[tuple[int, bool]] = []

    def write(fd: int, data: bytes | memoryview) -> int:
        written.append((len(data), bool(fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT)))
        return real_write(fd, data)

    data = random.Random(1).randbytes(2 * DIRECT_BLOCK + 100)
    with _writer(tmp_path, direct=True) as writer:
        monkeypatch.setattr(os, "write", write)
        for at in range(0, len(data), 300_001):
            writer.write(data[at : at + 300_001])
        assert writer.bytes_written == len(data)
        assert written == [(DIRECT_BLOCK, True), (DIRECT_BLOCK, True)]
        writer.commit()
    assert written[2:] == [(100, False)]  # the partial block through the page cache
    assert (tmp_path / NAME).read_bytes() == data


def test_a_short_write_is_carried_on_from_where_it_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write = os.write
    sizes: list[int] = []

    def short(fd: int, data: bytes | memoryview) -> int:
        sizes.append(len(data))
        return real_write(fd, data[:7])

    with _writer(tmp_path) as writer:
        monkeypatch.setattr(os, "write", short)
        writer.write(b"0123456789abcdefghij")
        monkeypatch.undo()
        writer.commit()
    assert sizes == [20, 13, 6]
    assert (tmp_path / NAME).read_bytes() == b"0123456789abcdefghij"


def test_writeback_starts_every_flush_after_bytes_through_the_page_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    advised: list[tuple[int, int, int]] = []
    real = os.posix_fadvise

    def fadvise(fd: int, offset: int, length: int, advice: int) -> None:
        advised.append((offset, length, advice))
        real(fd, offset, length, advice)

    monkeypatch.setattr(os, "posix_fadvise", fadvise)
    chunk = b"x" * (FLUSH_AFTER // 2)
    dontneed = os.POSIX_FADV_DONTNEED
    with _writer(tmp_path) as writer:
        writer.write(chunk)
        writer.write(chunk[:-1])
        assert advised == []  # one byte short
        writer.write(b"x")
        assert advised == [(0, FLUSH_AFTER, dontneed)]
        writer.write(chunk[:-1])
        assert advised == [(0, FLUSH_AFTER, dontneed)]  # counted from the last writeback
        writer.write(b"x" + chunk)
        writer.commit()
    assert advised == [(0, FLUSH_AFTER, dontneed), (FLUSH_AFTER, FLUSH_AFTER, dontneed)]


@pytest.mark.parametrize("kernel", ["refuses", "lacks"])
def test_advice_the_kernel_refuses_or_lacks_costs_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kernel: str
) -> None:
    def refused(*args: object) -> None:
        raise OSError(errno.ESPIPE, "Illegal seek")

    if kernel == "lacks":
        monkeypatch.delattr(os, "posix_fadvise")
    else:
        monkeypatch.setattr(os, "posix_fadvise", refused)
    with _writer(tmp_path) as writer:
        writer.write(b"x" * (FLUSH_AFTER + 1))
        writer.commit()
    assert (tmp_path / NAME).stat().st_size == FLUSH_AFTER + 1


def test_after_o_direct_is_refused_mid_write_writeback_is_started_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write = os.write
    advised: list[int] = []

    def write(fd: int, data: bytes | memoryview) -> int:
        if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_write(fd, data)

    monkeypatch.setattr(
        os, "posix_fadvise", lambda fd, offset, length, advice: advised.append(length)
    )
    with _writer(tmp_path, direct=True) as writer:
        monkeypatch.setattr(os, "write", write)
        writer.write(b"x" * (FLUSH_AFTER + DIRECT_BLOCK))
        writer.commit()
    assert advised == [FLUSH_AFTER]
    assert (tmp_path / NAME).stat().st_size == FLUSH_AFTER + DIRECT_BLOCK


@pytest.mark.parametrize(
    ("code", "error", "details"),
    [
        (errno.ENOSPC, InsufficientStorage, "no space left in the backup directory"),
        (errno.EIO, StorageError, ""),
    ],
)
def test_a_failed_write_says_what_it_was_writing_and_why(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    code: int,
    error: type[StorageError],
    details: str,
) -> None:
    def failing(fd: int, data: bytes | memoryview) -> int:
        raise OSError(code, os.strerror(code))

    with _writer(tmp_path) as writer:
        monkeypatch.setattr(os, "write", failing)
        with pytest.raises(error) as caught:
            writer.write(b"rows")
        assert caught.value.message == f"cannot write backup {NAME!r}: {os.strerror(code)}"
        assert caught.value.details == details
        assert writer.bytes_written == 0
    assert list(tmp_path.iterdir()) == []


def test_a_tail_that_cannot_be_written_fails_the_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(fd: int, data: bytes | memoryview) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    with _writer(tmp_path, direct=True) as writer:
        writer.write(b"a tail, still staged")
        monkeypatch.setattr(os, "write", full)
        with pytest.raises(InsufficientStorage):
            writer.commit()
    assert list(tmp_path.iterdir()) == []


def test_without_o_direct_the_writer_goes_through_the_page_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delattr(os, "O_DIRECT")
    with _writer(tmp_path, direct=True) as writer:
        writer.write(b"rows")
        assert writer._block is None
        writer.commit()
    assert (tmp_path / NAME).read_bytes() == b"rows"


def test_a_filesystem_refusing_o_direct_is_written_through_the_page_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = fcntl.fcntl

    def refusing(fd: int, command: int, arg: int = 0) -> int:
        if command == fcntl.F_SETFL and arg & os.O_DIRECT:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real(fd, command, arg)

    monkeypatch.setattr(fcntl, "fcntl", refusing)
    with _writer(tmp_path, direct=True) as writer:
        assert writer._block is None
        writer.write(b"rows")
        writer.commit()
    assert (tmp_path / NAME).read_bytes() == b"rows"
    fd = os.open(tmp_path, os.O_RDONLY)
    try:
        assert local_write._set_direct(fd, False)  # turning it off is allowed
        assert not local_write._set_direct(fd, True)
    finally:
        os.close(fd)
