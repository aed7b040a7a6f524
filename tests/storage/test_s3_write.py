"""S3Writer on its own, through the real S3Storage, against an S3 kept in memory that keeps S3's
rules for multipart uploads: parts of at least the minimum size but the last, completed with
the ETags they were given, in order; `If-None-Match: *` never overwrites; nothing is visible
before completion; an aborted upload is gone."""

from __future__ import annotations

import hashlib
import io
import logging
import threading
from typing import Any

import pytest
from botocore.exceptions import ClientError

from pgkeep.errors import Conflict, NotFound, PgkeepError, StorageError
from pgkeep.storage import s3_write
from pgkeep.storage.s3 import S3Storage
from pgkeep.storage.s3_write import MIN_PART, TIERS, _View, capacity, part_size

NAME = "backup-2024-12-09T10-30-45.sql"
BUCKET = "pgkeep-tests"
SMALL = 1024  # the part size the tests use (S3's own minimum is 5 MiB)


def _error(code: str, operation: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code}}, operation)


class MemoryS3:
    """The calls S3Storage's writer makes, with S3's semantics, in memory."""

    def __init__(self, min_part: int = 5 * 2**20) -> None:
        self.min_part = min_part
        self.objects: dict[str, bytes] = {}
        self.uploads: dict[str, tuple[str, dict[int, tuple[str, bytes]]]] = {}
        self.fail_part: int | None = None  # this part's upload fails (with `fail_code`)
        self.fail_code = "InternalError"
        self.fail_complete = ""  # completing fails with this code
        self.fail_abort = False
        self.aborted: list[str] = []
        self.aborts = 0  # abort calls, whether or not they succeeded
        self.bodies: list[object] = []  # every part's body as given (kept: identities count)
        self.gate: threading.Event | None = None  # part 1's upload waits for it
        self.completed: dict[str, list[int]] = {}  # each object's part sizes
        self._lock = threading.Lock()
        self._next = 0

    def _bucket(self, bucket: object, operation: str) -> None:
        if bucket != BUCKET:
            raise _error("NoSuchBucket", operation)

    def head_object(self, *, Bucket: str, Key: str) -> dict[str, Any]:  # noqa: N803
        self._bucket(Bucket, "HeadObject")
        if Key not in self.objects:
            raise _error("404", "HeadObject")
        return {"ContentLength": len(self.objects[Key])}

    def create_multipart_upload(self, *, Bucket: str, Key: str) -> dict[str, Any]:  # noqa: N803
        self._bucket(Bucket, "CreateMultipartUpload")
        with self._lock:
            self._next += 1
            upload = f"upload-{self._next}"
            self.uploads[upload] = (Key, {})
        return {"UploadId": upload}

    def upload_part(self, **kw: Any) -> dict[str, Any]:
        self._bucket(kw.get("Bucket"), "UploadPart")
        body = kw["Body"]
        self.bodies.append(body)
        if kw["PartNumber"] == 1 and self.gate is not None:
            self.gate.wait(10)
        data = body.read() if hasattr(body, "read") else bytes(body)
        if kw["PartNumber"] == self.fail_part:
            raise _error(self.fail_code, "UploadPart")
        key, parts = self.uploads[kw["UploadId"]]
        if key != kw["Key"]:
            raise _error("NoSuchUpload", "UploadPart")
        etag = '"' + hashlib.md5(data, usedforsecurity=False).hexdigest() + '"'
        parts[kw["PartNumber"]] = (etag, data)
        return {"ETag": etag}

    def complete_multipart_upload(self, **kw: Any) -> dict[str, Any]:
        self._bucket(kw.get("Bucket"), "CompleteMultipartUpload")
        if self.fail_complete:
            raise _error(self.fail_complete, "CompleteMultipartUpload")
        if kw["UploadId"] not in self.uploads or self.uploads[kw["UploadId"]][0] != kw["Key"]:
            raise _error("NoSuchUpload", "CompleteMultipartUpload")
        key, parts = self.uploads[kw["UploadId"]]
        listed = kw["MultipartUpload"]["Parts"]
        numbers = [p["PartNumber"] for p in listed]
        if not listed or numbers != sorted(set(numbers)):
            raise _error("InvalidPartOrder", "CompleteMultipartUpload")
        if any(
            p["PartNumber"] not in parts or parts[p["PartNumber"]][0] != p["ETag"] for p in listed
        ):
            raise _error("InvalidPart", "CompleteMultipartUpload")
        if any(len(parts[n][1]) < self.min_part for n in numbers[:-1]):
            raise _error("EntityTooSmall", "CompleteMultipartUpload")
        if kw.get("IfNoneMatch") == "*" and key in self.objects:
            raise _error("PreconditionFailed", "CompleteMultipartUpload")
        self.objects[key] = b"".join(parts[n][1] for n in numbers)
        self.completed[key] = [len(parts[n][1]) for n in numbers]
        del self.uploads[kw["UploadId"]]
        return {}

    def abort_multipart_upload(self, *, Bucket: str, Key: str, UploadId: str) -> None:  # noqa: N803
        self.aborts += 1
        self._bucket(Bucket, "AbortMultipartUpload")
        if self.fail_abort:
            raise _error("InternalError", "AbortMultipartUpload")
        if self.uploads.pop(UploadId, None) is None:
            raise _error("NoSuchUpload", "AbortMultipartUpload")
        self.aborted.append(Key)


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> MemoryS3:
    monkeypatch.setattr(s3_write, "MIN_PART", SMALL)
    return MemoryS3(min_part=SMALL)


def _store(s3: MemoryS3, max_parts: int = 10_000) -> S3Storage:
    return S3Storage(s3, BUCKET, "p", endpoint="http://s3.test", max_parts=max_parts)  # type: ignore[arg-type]


def _write(store: S3Storage, data: bytes, piece: int = 300, *, commit: bool = True) -> None:
    with store.open_write(NAME) as writer:
        for at in range(0, len(data), piece):
            writer.write(data[at : at + piece])
        assert writer.bytes_written == len(data)
        if commit:
            writer.commit()


@pytest.mark.parametrize("size", [0, 1, SMALL - 1, SMALL, SMALL + 1, 3 * SMALL, 5 * SMALL + 17])
def test_an_upload_is_visible_whole_once_committed(s3: MemoryS3, size: int) -> None:
    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    _write(_store(s3), data)
    assert s3.objects == {f"p/{NAME}": data}
    assert s3.uploads == {}
    assert s3.aborts == 0  # completed: nothing to abort


def test_nothing_is_visible_before_the_commit_and_leaving_aborts(s3: MemoryS3) -> None:
    store = _store(s3)
    with store.open_write(NAME) as writer:
        writer.write(b"x" * (2 * SMALL + 5))
        assert s3.objects == {}
    assert s3.objects == {}
    assert s3.uploads == {}
    assert s3.aborted == [f"p/{NAME}"]
    _write(store, b"again")  # the name is free for the next writer
    assert s3.objects == {f"p/{NAME}": b"again"}


def test_a_failed_last_part_leaves_nothing_visible_and_aborts_the_upload(s3: MemoryS3) -> None:
    """The last part goes up at commit: its failure fails the commit, completes nothing."""
    s3.fail_part = 3
    store = _store(s3)
    with pytest.raises(StorageError) as caught:
        _write(store, b"y" * (2 * SMALL + 100))
    assert caught.value.message == (
        f"cannot write {NAME!r} in s3://{BUCKET}/p at http://s3.test: InternalError"
    )
    assert s3.objects == {}
    assert s3.uploads == {}
    assert s3.aborted == [f"p/{NAME}"]
    s3.fail_part = None
    _write(store, b"z")  # no writer is left holding the name
    assert s3.objects == {f"p/{NAME}": b"z"}


def test_a_failed_part_stops_the_writes_after_it(s3: MemoryS3) -> None:
    s3.fail_part = 1
    store = _store(s3)
    with store.open_write(NAME) as writer:
        writer.write(b"a" * SMALL)  # part 1, handed to the uploader

        def go_on() -> None:
            for _ in range(10):
                writer.write(b"b" * SMALL)

        with pytest.raises(StorageError, match="InternalError"):
            go_on()
        with pytest.raises(StorageError, match="InternalError"):
            writer.write(b"c")
        with pytest.raises(StorageError, match="InternalError"):
            writer.commit()
    assert s3.objects == {}
    assert s3.uploads == {}


def test_parts_grow_in_tiers_and_each_but_the_last_is_whole(s3: MemoryS3) -> None:
    store = _store(s3, max_parts=2 * TIERS)  # two parts a tier
    parts = [SMALL, SMALL, 2 * SMALL, 2 * SMALL, 4 * SMALL]
    data = b"".join(bytes([n]) * size for n, size in enumerate(parts)) + b"tail"
    _write(store, data, piece=SMALL // 3)
    assert s3.objects[f"p/{NAME}"] == data
    assert s3.completed[f"p/{NAME}"] == [*parts, 4]


def test_an_upload_needing_more_parts_than_allowed_fails_and_leaves_nothing(
    s3: MemoryS3,
) -> None:
    store = _store(s3, max_parts=2)
    with pytest.raises(StorageError) as caught:
        _write(store, b"x" * (3 * SMALL + 1))  # parts of SMALL, then 2 * SMALL
    assert caught.value.message == f"backup {NAME!r} needs more than 2 parts"
    assert caught.value.details == "raise PGKEEP_S3_MAX_PARTS if the store allows it"
    assert s3.objects == {}
    assert s3.uploads == {}
    _write(store, b"x" * (3 * SMALL))  # exactly two parts fit
    assert s3.completed[f"p/{NAME}"] == [SMALL, 2 * SMALL]


def test_two_writers_never_overwrite_one_name(s3: MemoryS3) -> None:
    first, second = _store(s3), _store(s3)  # two processes
    one, other = first.open_write(NAME), second.open_write(NAME)
    one.write(b"first")
    other.write(b"second")
    one.commit()
    with pytest.raises(Conflict) as caught:
        other.commit()
    assert caught.value.message == f"backup {NAME!r} already exists"
    one.__exit__(None, None, None)
    other.__exit__(None, None, None)
    assert s3.objects == {f"p/{NAME}": b"first"}
    assert s3.uploads == {}


def test_an_abort_that_fails_is_logged_not_raised(
    s3: MemoryS3, caplog: pytest.LogCaptureFixture
) -> None:
    s3.fail_abort = True
    with caplog.at_level(logging.WARNING, logger="pgkeep.storage.s3_write"):
        _write(_store(s3), b"half", commit=False)
    assert [r.getMessage() for r in caplog.records] == [
        f"could not abort the upload of {NAME} in s3://{BUCKET}/p at http://s3.test "
        "(swept at the next start): ClientError"
    ]
    assert s3.objects == {}


def test_the_writer_fills_two_buffers_in_turn_however_many_parts(s3: MemoryS3) -> None:
    _write(_store(s3), b"".join(bytes([n]) * SMALL for n in range(8)), piece=SMALL)
    assert s3.objects[f"p/{NAME}"] == b"".join(bytes([n]) * SMALL for n in range(8))
    assert len(s3.bodies) == 8
    assert len({id(body) for body in s3.bodies}) == 2


def test_a_part_is_filled_while_the_one_before_uploads_and_no_further(s3: MemoryS3) -> None:
    """Two parts in memory at most: the writer waits for the upload before handing on."""
    s3.gate = threading.Event()
    store = _store(s3)
    writer = store.open_write(NAME)
    done = threading.Event()

    def write() -> None:
        writer.write(b"a" * SMALL)  # part 1: handed on, its upload held at the gate
        writer.write(b"b" * SMALL)  # part 2: filled, then waits for part 1's upload
        done.set()

    thread = threading.Thread(target=write)
    thread.start()
    assert not done.wait(0.5)
    s3.gate.set()
    thread.join(10)
    assert done.is_set()
    writer.commit()
    writer.__exit__(None, None, None)
    assert s3.objects[f"p/{NAME}"] == b"a" * SMALL + b"b" * SMALL


@pytest.mark.parametrize(
    ("failing", "code", "error", "message"),
    [
        ("part", "404", NotFound, f"backup {NAME!r} not found"),
        ("complete", "404", NotFound, f"backup {NAME!r} not found"),
        (
            "complete",
            "InternalError",
            StorageError,
            f"cannot save {NAME!r} in s3://{BUCKET}/p at http://s3.test: InternalError",
        ),
    ],
)
def test_a_failure_names_the_backup_and_the_store(
    s3: MemoryS3, failing: str, code: str, error: type[PgkeepError], message: str
) -> None:
    if failing == "part":
        s3.fail_part, s3.fail_code = 1, code
    else:
        s3.fail_complete = code
    with pytest.raises(error) as caught:
        _write(_store(s3), b"rows")
    assert type(caught.value) is error
    assert caught.value.message == message
    assert s3.objects == {}
    assert s3.uploads == {}


def test_part_sizes_reach_five_terabytes_in_ten_thousand_parts() -> None:
    assert part_size(0, 10_000) == MIN_PART == 8 * 2**20
    assert part_size(999, 10_000) == MIN_PART
    assert part_size(1000, 10_000) == 2 * MIN_PART
    assert part_size(9999, 10_000) == 512 * MIN_PART == 4 * 2**30  # under S3's 5 GiB
    assert part_size(10**6, 10_000) == 512 * MIN_PART  # never past the last tier
    assert part_size(5, 3) == part_size(5, 1) == 32 * MIN_PART  # a tier of one part at least
    assert capacity(10_000) > 5 * 10**12
    assert capacity(1) == MIN_PART
    assert capacity(3) == (1 + 2 + 4) * MIN_PART


def test_the_last_parts_view_reads_and_seeks_like_a_file() -> None:
    view = _View(bytearray(b"0123456789"), 6)
    assert (view.readable(), view.seekable()) == (True, True)
    assert view.read() == b"012345"
    assert view.tell() == 6
    assert view.seek(2) == 2
    assert view.read(3) == b"234"
    assert view.seek(-1, io.SEEK_CUR) == 4
    assert view.read() == b"45"
    assert view.seek(-2, io.SEEK_END) == 4
    assert view.seek(100) == 6
    assert view.seek(-100) == 0
    assert view.read(100) == b"012345"
    assert view.read(1) == b""
