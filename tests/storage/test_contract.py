"""One contract, every Storage implementation."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from pgkeep.core.ports import Storage
from pgkeep.errors import Conflict, NotFound, StorageError
from pgkeep.storage import LocalStorage, MemoryStorage
from pgkeep.storage.s3 import S3Storage
from pgkeep.throwaway.s3 import ThrowawayS3

NAME = "backup-2024-12-09T10-30-45.sql"
Factory = Callable[[Path], Storage]


@pytest.fixture(params=["local", "memory", "s3"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    if request.param == "local":
        return LocalStorage(tmp_path / "store")
    if request.param == "s3":
        server: ThrowawayS3 = request.getfixturevalue("s3_server")
        prefix = "contract/" + secrets.token_hex(4)
        return S3Storage(server.client(), "pgkeep-tests", prefix, endpoint=server.endpoint)
    return MemoryStorage()


def _put(storage: Storage, name: str, data: bytes) -> None:
    with storage.open_write(name) as writer:
        writer.write(data)
        writer.commit()


def test_storage_write_commit_then_list_and_read(storage: Storage) -> None:
    _put(storage, NAME, b"hello " * 100_000)
    [info] = storage.list()
    assert (info.name, info.size_bytes) == (NAME, 600_000)
    handle = storage.open_read(NAME)
    try:
        assert handle.info.size_bytes == 600_000
        assert b"".join(handle.iter_range(0, 600_000)) == b"hello " * 100_000
        assert b"".join(handle.iter_range(6, 11)) == b"hello"
        assert handle.read(6, 5) == b"hello"
        assert handle.read_cached(599_994, 100) in (None, b"hello ")
        with pytest.raises(StorageError):
            handle.read(600_000, 1)
        assert handle.etag.startswith('"')
    finally:
        handle.close()


def test_storage_uncommitted_write_is_invisible_and_removed(storage: Storage) -> None:
    with storage.open_write(NAME) as writer:
        writer.write(b"half a dump")
        assert storage.list() == []
        with pytest.raises(NotFound):
            storage.open_read(NAME)
    assert storage.list() == []
    _put(storage, NAME, b"the retry works")  # the name is free again


def test_storage_write_failure_inside_the_block_leaves_nothing(storage: Storage) -> None:
    def broken_dump() -> None:
        with storage.open_write(NAME) as writer:
            writer.write(b"x")
            raise RuntimeError("the dump broke")

    with pytest.raises(RuntimeError):
        broken_dump()
    assert storage.list() == []


def test_storage_refuses_to_overwrite(storage: Storage) -> None:
    _put(storage, NAME, b"first")
    with pytest.raises(Conflict):
        storage.open_write(NAME)
    with storage.open_write(NAME + "x"), pytest.raises(Conflict):
        storage.open_write(NAME + "x")
    handle = storage.open_read(NAME)
    assert b"".join(handle.iter_range(0, 5)) == b"first"
    handle.close()


def test_storage_delete(storage: Storage) -> None:
    _put(storage, NAME, b"data")
    storage.delete(NAME)
    assert storage.list() == []
    with pytest.raises(NotFound):
        storage.delete(NAME)


def test_storage_missing_object_is_not_found(storage: Storage) -> None:
    with pytest.raises(NotFound, match="not found"):
        storage.open_read(NAME)


def test_storage_errors_are_pgkeep_errors(storage: Storage) -> None:
    assert issubclass(NotFound, Exception)
    assert not issubclass(StorageError, OSError)


def test_storage_lists_with_tags_that_change_with_the_bytes(storage: Storage) -> None:
    storage.put("pgkeep-notes", b"one")
    [first] = storage.list()
    storage.put("pgkeep-notes", b"two")
    [second] = storage.list()
    assert first.etag
    assert first.etag != second.etag
    handle = storage.open_read("pgkeep-notes")
    assert handle.etag == second.etag
    handle.close()


def test_storage_put_replaces_and_concurrent_puts_all_succeed(storage: Storage) -> None:
    errors: list[BaseException] = []

    def put(i: int) -> None:
        try:
            storage.put(NAME + ".pin", str(i).encode())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=put, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert [o.name for o in storage.list()] == [NAME + ".pin"]


def test_storage_check_and_features(storage: Storage) -> None:
    assert storage.check()
    assert storage.list() == []  # the probe is gone
    assert (storage.free_bytes() is not None) == storage.features.free_space
    assert storage.where


def test_storage_large_object_streams_through_parts(storage: Storage) -> None:
    data = bytes(range(256)) * (40 * 1024 * 1024 // 256 + 7)  # 40 MiB and a bit: 3 parts on S3
    with storage.open_write(NAME) as writer:
        for start in range(0, len(data), 1 << 20):
            writer.write(data[start : start + (1 << 20)])
        writer.commit()
    handle = storage.open_read(NAME)
    try:
        assert handle.info.size_bytes == len(data)
        assert b"".join(handle.iter_range(0, len(data))) == data
        assert handle.read(len(data) - 10, 10) == data[-10:]
        assert handle.read(5, 3) == data[5:8]  # not sequential: a new range
    finally:
        handle.close()
