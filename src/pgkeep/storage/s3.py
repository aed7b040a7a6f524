"""S3Storage: backups as objects under one prefix of an S3-compatible bucket, streamed both ways.

Writes are multipart uploads fed from memory a part at a time, uploaded on a thread
while the dump goes on (so pg_dump and the network overlap), and completed with
`If-None-Match: *`, so two writers can never overwrite one name; an upload that
does not complete is aborted, and stale ones are swept at start. The part size
grows with the data (10 tiers, doubling) so that a 5 TB dump stays under
PGKEEP_S3_MAX_PARTS parts; memory holds at most two parts (one filling, one
uploading: 16 MiB for the first 8 GB of a dump). Reads are ranged
GETs, kept streaming while they are sequential. There is no free space to ask
about and no page cache (see `features`).
"""

from __future__ import annotations

import builtins
import logging
import secrets
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

from pgkeep.core.models import Features, StoredObject
from pgkeep.errors import Conflict, InvalidInput, NotFound, PgkeepError, StorageError, Unavailable
from pgkeep.storage.chunks import read_range
from pgkeep.storage.meter import READS
from pgkeep.storage.s3_write import S3Writer

if TYPE_CHECKING:
    from types_boto3_s3.client import S3Client

logger = logging.getLogger(__name__)

LIST_TTL_SECONDS = 5.0  # how long a listing may be reused when nothing changed here
PROBE = "pgkeep-ready-probe-"


class S3Storage:
    features = Features()

    def __init__(
        self,
        client: S3Client,
        bucket: str,
        prefix: str,
        *,
        endpoint: str = "",
        max_parts: int = 10_000,
    ) -> None:
        self._client = client
        self._bucket = bucket
        self._prefix = prefix.strip("/")
        self._max_parts = max_parts
        self._changes = 0
        self._writing: set[str] = set()
        self._lock = threading.Lock()
        path = f"{bucket}/{self._prefix}" if self._prefix else bucket
        self.where = f"s3://{path}" + (f" at {endpoint}" if endpoint else "")

    def _key(self, name: str) -> str:
        if not name or "/" in name or "\\" in name or "\0" in name or name.startswith("."):
            raise InvalidInput(f"invalid object name {name[:64]!a}")
        return f"{self._prefix}/{name}" if self._prefix else name

    def list(self) -> builtins.list[StoredObject]:
        start = f"{self._prefix}/" if self._prefix else ""
        found = []
        try:
            pages = self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self._bucket, Prefix=start, Delimiter="/"
            )
            for page in pages:
                for item in page.get("Contents", []):
                    name = item["Key"][len(start) :]
                    if name and "/" not in name and not name.startswith("."):
                        found.append(
                            StoredObject(name, item["Size"], item["LastModified"], item["ETag"])
                        )
        except (ClientError, BotoCoreError) as exc:
            raise self.error(exc, "list") from exc
        return found

    def open_read(self, name: str, listed: StoredObject | None = None) -> S3ReadHandle:
        key = self._key(name)
        if listed is not None and listed.name == name and listed.etag:
            return S3ReadHandle(self, key, listed)  # no HEAD: reads are pinned to its ETag
        try:
            head = self._client.head_object(Bucket=self._bucket, Key=key)
        except (ClientError, BotoCoreError) as exc:
            raise self.error(exc, f"read {name!r}", name) from exc
        info = StoredObject(name, head["ContentLength"], head["LastModified"], head["ETag"])
        return S3ReadHandle(self, key, info)

    def open_write(self, name: str) -> S3Writer:
        key = self._key(name)
        with self._lock:
            if name in self._writing:
                raise Conflict(f"backup {name!r} is already being written")
            self._writing.add(name)
        try:
            if self._exists(key):
                raise Conflict(f"backup {name!r} already exists")
            upload = self._client.create_multipart_upload(Bucket=self._bucket, Key=key)
        except (ClientError, BotoCoreError) as exc:
            self.done_writing(name)
            raise self.error(exc, f"write {name!r}", name) from exc
        except PgkeepError:
            self.done_writing(name)
            raise
        return S3Writer(self, name, key, upload["UploadId"])

    def _exists(self, key: str) -> bool:
        try:
            self._client.head_object(Bucket=self._bucket, Key=key)
        except ClientError as exc:
            if _code(exc) in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True

    def done_writing(self, name: str) -> None:
        with self._lock:
            self._writing.discard(name)
            self._changes += 1

    def put(self, name: str, data: bytes) -> None:
        try:
            self._client.put_object(Bucket=self._bucket, Key=self._key(name), Body=data)
        except (ClientError, BotoCoreError) as exc:
            raise self.error(exc, f"write {name!r}", name) from exc
        finally:
            self.done_writing(name)

    def delete(self, name: str) -> None:
        key = self._key(name)
        try:
            if not self._exists(key):
                raise NotFound(f"backup {name!r} not found")
            self._client.delete_object(Bucket=self._bucket, Key=key)
        except (ClientError, BotoCoreError) as exc:
            raise self.error(exc, f"delete {name!r}", name) from exc
        finally:
            self.done_writing(name)

    def remove_partials(
        self,
        keep: frozenset[str] = frozenset(),
        older_than: float = 0.0,
        dead: frozenset[str] = frozenset(),
    ) -> builtins.list[str]:
        """Abort the multipart uploads under the prefix that no running job owns."""
        horizon = datetime.now(UTC) - timedelta(seconds=older_than)
        start = f"{self._prefix}/" if self._prefix else ""
        removed = []
        try:
            pages = self._client.get_paginator("list_multipart_uploads").paginate(
                Bucket=self._bucket, Prefix=start, Delimiter="/"
            )
            for page in pages:
                for upload in page.get("Uploads", []):
                    name = upload["Key"][len(start) :]
                    # Some stores ignore the delimiter here: another prefix is not ours.
                    if "/" in name or name in keep or name in self._writing:
                        continue
                    if older_than and upload["Initiated"] > horizon and name not in dead:
                        continue
                    self._client.abort_multipart_upload(
                        Bucket=self._bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                    )
                    removed.append(f"{name} (upload {upload['UploadId'][:12]}…)")
        except (ClientError, BotoCoreError) as exc:
            raise self.error(exc, "sweep unfinished uploads") from exc
        return sorted(removed)

    def free_bytes(self) -> int | None:
        return None

    def changed_elsewhere(self) -> None:
        with self._lock:
            self._changes += 1

    def version(self) -> object | None:
        # ListObjectsV2 carries no change counter: what this process changed, or a few
        # seconds passing, makes the next list look again.
        return (self._changes, int(time.monotonic() // LIST_TTL_SECONDS))

    def check(self) -> str:
        """The bucket answers and takes a write (a probe with a name of its own)."""
        try:
            self._client.head_bucket(Bucket=self._bucket)
        except (ClientError, BotoCoreError) as exc:
            raise self.error(exc, "reach the bucket") from exc
        probe = PROBE + secrets.token_hex(8)
        self.put(probe, b"ok")
        self.delete(probe)
        return f"{self.where}: reachable, writable"

    def error(self, exc: Exception, what: str, name: str | None = None) -> PgkeepError:
        """S3's errors as pgkeep's, naming the store (never a credential)."""
        if isinstance(exc, BotoConnectionError):
            return Unavailable(f"cannot reach the store {self.where}", type(exc).__name__)
        if isinstance(exc, ClientError):
            code = _code(exc)
            if code in ("404", "NoSuchKey", "NotFound") and name is not None:
                return NotFound(f"backup {name!r} not found")
            if code in ("PreconditionFailed", "412"):
                return Conflict(f"backup {name!r} already exists")
            if code in ("NoSuchBucket",) or (code == "404" and name is None):
                return StorageError(f"the bucket of {self.where} does not exist")
            if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "403"):
                return StorageError(
                    f"the store {self.where} refused the credentials ({code})",
                    "check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or the profile",
                )
            return StorageError(f"cannot {what} in {self.where}: {code}")
        return StorageError(f"cannot {what} in {self.where}: {type(exc).__name__}")

    @property
    def client(self) -> S3Client:
        return self._client

    @property
    def max_parts(self) -> int:
        return self._max_parts

    @property
    def bucket(self) -> str:
        return self._bucket


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class S3ReadHandle:
    """An object as it was when opened (its ETag pins every read to that version)."""

    def __init__(self, store: S3Storage, key: str, info: StoredObject) -> None:
        self._store = store
        self._key = key
        self.info = info
        self.etag = info.etag
        self._body: Any = None
        self._position = -1

    def _open(self, start: int, end: int) -> Any:
        try:
            response = self._store.client.get_object(
                Bucket=self._store.bucket,
                Key=self._key,
                Range=f"bytes={start}-{end - 1}",
                IfMatch=self.etag,
            )
        except ClientError as exc:
            if _code(exc) in ("PreconditionFailed", "412"):
                raise StorageError(
                    f"{self.info.name!r} in {self._store.where} changed while being read"
                ) from exc
            raise self._store.error(exc, f"read {self.info.name!r}", self.info.name) from exc
        except BotoCoreError as exc:
            raise self._store.error(exc, f"read {self.info.name!r}", self.info.name) from exc
        return response["Body"]

    def read(self, offset: int, size: int) -> bytes:
        if offset >= self.info.size_bytes:
            raise StorageError(f"read past the end of {self.info.name!r}")
        if self._body is None or offset != self._position:
            self.close()
            self._body = self._open(offset, self.info.size_bytes)
            self._position = offset
        try:
            chunk: bytes = self._body.read(size)
        except (BotoCoreError, OSError) as exc:
            self.close()
            raise StorageError(
                f"reading {self.info.name!r} from {self._store.where} broke"
            ) from exc
        if not chunk:
            raise StorageError(f"backup {self.info.name!r} shrank while being read")
        self._position += len(chunk)
        READS.count(self._store.where, len(chunk))
        return chunk

    def read_cached(self, offset: int, size: int) -> bytes | None:
        return None  # no page cache: every read may wait on the network

    def iter_range(self, start: int, end: int) -> Iterator[bytes]:
        return read_range(self.read, start, end)

    def close(self) -> None:
        if self._body is not None:
            self._body.close()
            self._body = None
