"""Writing one object of S3Storage: a multipart upload fed a part at a time.

Parts are uploaded on a thread while the dump goes on, so pg_dump and the network
overlap; at most two parts are in memory (one filling, one uploading). Part sizes
grow in 10 tiers, doubling, so that PGKEEP_S3_MAX_PARTS parts (10,000) hold 8 TB:
8 MiB parts (16 MiB of memory) for a dump's first 8 GB, 32 MiB past 25 GB, 128 MiB
past 126 GB, 1 GiB past 1 TB, 4 GiB past 4.3 TB. `commit` completes the upload
with `If-None-Match: *`: two writers can never overwrite one name. Leaving without
`commit` aborts it.
"""

from __future__ import annotations

import contextlib
import io
import logging
import queue
import threading
from typing import TYPE_CHECKING, Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from pgkeep.errors import PgkeepError, StorageError

if TYPE_CHECKING:
    from types_boto3_s3.client import S3Client


class Store(Protocol):
    """What a writer needs of its store (S3Storage)."""

    @property
    def client(self) -> S3Client: ...

    @property
    def bucket(self) -> str: ...

    @property
    def max_parts(self) -> int: ...

    @property
    def where(self) -> str: ...

    def error(self, exc: Exception, what: str, name: str | None = None) -> PgkeepError: ...

    def done_writing(self, name: str) -> None: ...


logger = logging.getLogger(__name__)

MIN_PART = 8 * 1024 * 1024  # S3 wants at least 5 MiB for every part but the last
TIERS = 10  # the largest part, MIN_PART << 9, is 4 GiB: under S3's 5 GiB


def part_size(number: int, max_parts: int) -> int:
    """The size of part `number` (0-based): MIN_PART, doubling every max_parts/TIERS parts."""
    per_tier = max(1, max_parts // TIERS)
    return MIN_PART << min(number // per_tier, TIERS - 1)


def capacity(max_parts: int) -> int:
    """The largest object an upload of at most `max_parts` parts can hold."""
    return sum(part_size(n, max_parts) for n in range(max_parts))


class S3Writer:
    """A multipart upload: invisible until `commit` completes it; leaving without aborts it.

    Two buffers of the part size take turns: one fills while the other uploads, and
    each is reused for the next part, so memory stays at two parts whatever the
    size of the dump (no per-part allocation for the allocator to fragment).
    """

    def __init__(self, store: Store, name: str, key: str, upload_id: str) -> None:
        self._store = store
        self._name = name
        self._key = key
        self._upload = upload_id
        self._filling: bytearray | None = None
        self._filled = 0
        self._spare: bytearray | None = None  # the other buffer, once its upload is done
        self._parts: list[dict[str, Any]] = []
        self._queue: queue.Queue[tuple[int, bytearray, int] | None] = queue.Queue(maxsize=1)
        # Held from handing a part over until its upload is done: two parts in memory at
        # most, the one uploading and the one filling.
        self._slot = threading.Semaphore(1)
        self._failure: PgkeepError | None = None
        self._committed = False
        self._sent = 0
        self._max_parts = store.max_parts
        self.bytes_written = 0
        self._thread = threading.Thread(target=self._uploader, daemon=True)
        self._thread.start()

    def write(self, chunk: bytes) -> None:
        self._raise_failure()
        self.bytes_written += len(chunk)
        view = memoryview(chunk)
        while view:
            buffer = self._buffer()
            n = min(len(buffer) - self._filled, len(view))
            buffer[self._filled : self._filled + n] = view[:n]
            self._filled += n
            view = view[n:]
            if self._filled == len(buffer):
                self._send_filled()

    def _buffer(self) -> bytearray:
        """The buffer being filled: the spare one when it is the part's size, else new."""
        if self._filling is None:
            size = part_size(self._sent, self._max_parts)
            spare, self._spare = self._spare, None
            self._filling = spare if spare is not None and len(spare) == size else bytearray(size)
        return self._filling

    def _send_filled(self) -> None:
        """Hand the filled part to the uploader once the previous one is up."""
        if self._sent >= self._max_parts:
            raise StorageError(
                f"backup {self._name!r} needs more than {self._max_parts} parts",
                "raise PGKEEP_S3_MAX_PARTS if the store allows it",
            )
        self._slot.acquire()
        self._raise_failure_releasing()
        buffer, filled = self._buffer(), self._filled
        self._filling, self._filled = None, 0
        self._sent += 1
        self._queue.put((self._sent, buffer, filled))

    def _uploader(self) -> None:
        client, bucket = self._store.client, self._store.bucket
        while (item := self._queue.get()) is not None:
            number, buffer, filled = item
            if self._failure is not None:
                self._slot.release()
                continue
            try:
                body: bytearray | _View = buffer if filled == len(buffer) else _View(buffer, filled)
                response = client.upload_part(
                    Bucket=bucket,
                    Key=self._key,
                    UploadId=self._upload,
                    PartNumber=number,
                    Body=body,  # type: ignore[arg-type]
                )
                self._parts.append({"PartNumber": number, "ETag": response["ETag"]})
            except (ClientError, BotoCoreError) as exc:
                self._failure = self._store.error(exc, f"write {self._name!r}", self._name)
            finally:
                self._spare = buffer  # free for the part after next
                del buffer
                self._slot.release()

    def _raise_failure_releasing(self) -> None:
        if self._failure is not None:
            self._slot.release()
            raise self._failure

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise self._failure

    def commit(self) -> None:
        if self._filled or not self._sent:
            self._buffer()
            self._send_filled()
        self._queue.put(None)
        self._thread.join()
        self._raise_failure()
        parts = sorted(self._parts, key=lambda p: p["PartNumber"])
        try:
            self._store.client.complete_multipart_upload(
                Bucket=self._store.bucket,
                Key=self._key,
                UploadId=self._upload,
                MultipartUpload={"Parts": parts},  # type: ignore[typeddict-item]
                IfNoneMatch="*",
            )
        except (ClientError, BotoCoreError) as exc:
            raise self._store.error(exc, f"save {self._name!r}", self._name) from exc
        self._committed = True

    def __enter__(self) -> S3Writer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._filling = self._spare = None
        if self._thread.is_alive():
            self._failure = self._failure or StorageError("abandoned")
            with contextlib.suppress(queue.Full):
                self._queue.put(None, timeout=60)
            self._thread.join(timeout=60)
        if not self._committed:
            try:
                self._store.client.abort_multipart_upload(
                    Bucket=self._store.bucket, Key=self._key, UploadId=self._upload
                )
            except (ClientError, BotoCoreError) as exc:
                logger.warning(
                    "could not abort the upload of %s in %s (swept at the next start): %s",
                    self._name,
                    self._store.where,
                    type(exc).__name__,
                )
        self._store.done_writing(self._name)


class _View(io.RawIOBase):
    """The first `size` bytes of a buffer as a seekable file, without copying them (the
    last part, which fills its buffer only partly)."""

    def __init__(self, buffer: bytearray, size: int) -> None:
        super().__init__()
        self._view = memoryview(buffer)[:size]
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, target: Any) -> int:
        n = min(len(target), len(self._view) - self._position)
        target[:n] = self._view[self._position : self._position + n]
        self._position += n
        return n

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: len(self._view)}
        self._position = max(0, min(len(self._view), base[whence] + offset))
        return self._position

    def tell(self) -> int:
        return self._position
