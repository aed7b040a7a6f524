"""S3Storage against a real SeaweedFS: parts, conditional completion, sweeping, failures."""

from __future__ import annotations

import secrets
import tracemalloc
from collections.abc import Iterator

import boto3
import pytest
from botocore.config import Config

from pgkeep.errors import Conflict, StorageError, Unavailable
from pgkeep.storage.s3 import S3Storage
from pgkeep.storage.s3_write import MIN_PART, capacity, part_size
from pgkeep.throwaway.s3 import ThrowawayS3

NAME = "backup-2024-12-09T10-30-45.sql"
BUCKET = "pgkeep-tests"


@pytest.fixture
def store(s3_server: ThrowawayS3) -> S3Storage:
    prefix = "s3/" + secrets.token_hex(4)
    return S3Storage(s3_server.client(), BUCKET, prefix, endpoint=s3_server.endpoint)


def _uploads(store: S3Storage) -> list[str]:
    response = store.client.list_multipart_uploads(Bucket=BUCKET)
    return [u["Key"] for u in response.get("Uploads", [])]


def test_part_sizes_grow_so_five_terabytes_fit() -> None:
    assert part_size(0, 10_000) == MIN_PART
    assert MIN_PART >= 5 * 2**20  # S3's smallest part but the last
    assert part_size(999, 10_000) == MIN_PART
    assert part_size(1000, 10_000) == 2 * MIN_PART
    assert part_size(9999, 10_000) == 512 * MIN_PART == 4 * 2**30  # under S3's 5 GiB
    assert capacity(10_000) > 5 * 10**12
    assert capacity(1_000) > 500 * 10**9  # a provider that allows only 1,000 parts


def test_an_upload_holds_two_parts_in_memory_however_long(store: S3Storage) -> None:
    chunk = secrets.token_bytes(1 << 20)
    parts = 6
    tracemalloc.start()
    try:
        with store.open_write(NAME) as writer:
            for _ in range(parts * MIN_PART // len(chunk) + 3):
                writer.write(chunk)
            writer.commit()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2.5 * MIN_PART, f"peak {peak / 2**20:.1f} MiB"
    handle = store.open_read(NAME)
    assert handle.info.size_bytes == (parts * MIN_PART // len(chunk) + 3) * len(chunk)
    assert handle.read(handle.info.size_bytes - len(chunk), len(chunk)) == chunk
    handle.close()


def test_a_capped_upload_fails_clearly_and_leaves_nothing(s3_server: ThrowawayS3) -> None:
    store = S3Storage(s3_server.client(), BUCKET, "cap/" + secrets.token_hex(4), max_parts=1)

    def write() -> None:
        with store.open_write(NAME) as writer:
            writer.write(b"x" * (MIN_PART + 1))
            writer.commit()

    with pytest.raises(StorageError, match="needs more than 1 parts"):
        write()
    assert store.list() == []
    assert not [k for k in _uploads(store) if k.startswith("cap/")]


def test_two_writers_never_overwrite_one_name(s3_server: ThrowawayS3, store: S3Storage) -> None:
    """Two processes (two stores, same prefix) race for one name: one wins, the other 409s."""
    prefix = store.where.split(BUCKET + "/", 1)[1].split(" ", 1)[0]
    other = S3Storage(s3_server.client(), BUCKET, prefix)
    first, second = store.open_write(NAME), other.open_write(NAME)
    first.write(b"first")
    second.write(b"second")
    first.commit()
    with pytest.raises(Conflict, match="already exists"):
        second.commit()
    first.__exit__(None, None, None)
    second.__exit__(None, None, None)
    handle = store.open_read(NAME)
    assert b"".join(handle.iter_range(0, 5)) == b"first"
    handle.close()
    assert not [k for k in _uploads(store) if k.endswith(NAME) and prefix in k]


def test_unfinished_uploads_are_swept_unless_owned(
    s3_server: ThrowawayS3, store: S3Storage
) -> None:
    prefix = store.where.split(BUCKET + "/", 1)[1].split(" ", 1)[0]
    client = store.client
    for name in ("a.sql", "b.sql"):
        client.create_multipart_upload(Bucket=BUCKET, Key=f"{prefix}/{name}")
    client.create_multipart_upload(Bucket=BUCKET, Key=f"{prefix}/sub/c.sql")  # another prefix
    removed = store.remove_partials(keep=frozenset({"b.sql"}))
    assert [r.split(" ")[0] for r in removed] == ["a.sql"]
    left = [k for k in _uploads(store) if k.startswith(prefix)]
    assert sorted(left) == [f"{prefix}/b.sql", f"{prefix}/sub/c.sql"]


def test_listing_stays_within_its_prefix(store: S3Storage) -> None:
    store.put("mine", b"1")
    prefix = store.where.split(BUCKET + "/", 1)[1].split(" ", 1)[0]
    store.client.put_object(Bucket=BUCKET, Key=f"{prefix}/other-target/x", Body=b"2")
    store.client.put_object(Bucket=BUCKET, Key=f"{prefix}x/y", Body=b"3")
    assert [o.name for o in store.list()] == ["mine"]


def test_a_read_trusting_a_listing_fails_if_the_object_changed_since(store: S3Storage) -> None:
    store.put("m.json", b"first")
    [listed] = store.list()
    handle = store.open_read("m.json", listed)  # no HEAD: the listing's ETag pins the read
    assert b"".join(handle.iter_range(0, listed.size_bytes)) == b"first"
    handle.close()
    store.put("m.json", b"other")  # same size, other bytes
    stale = store.open_read("m.json", listed)
    with pytest.raises(StorageError, match="changed while being read"):
        b"".join(stale.iter_range(0, listed.size_bytes))
    stale.close()


def test_failures_name_the_store_and_never_a_secret(s3_server: ThrowawayS3) -> None:
    wrong = boto3.client(
        "s3",
        endpoint_url=s3_server.endpoint,
        aws_access_key_id=s3_server.access_key,
        aws_secret_access_key="not-the-secret-" + secrets.token_hex(8),
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )
    with pytest.raises(StorageError) as refused:
        S3Storage(wrong, BUCKET, "x", endpoint=s3_server.endpoint).check()
    assert "refused the credentials" in refused.value.message
    assert f"s3://{BUCKET}/x at {s3_server.endpoint}" in refused.value.message
    assert s3_server.secret_key not in str(refused.value.__dict__)
    with pytest.raises(StorageError, match="does not exist"):
        S3Storage(s3_server.client(), "no-such-bucket", "", endpoint=s3_server.endpoint).check()
    closed = boto3.client(
        "s3",
        endpoint_url="http://127.0.0.1:1",
        aws_access_key_id="a",
        aws_secret_access_key="b",
        region_name="us-east-1",
        config=Config(retries={"max_attempts": 1}, connect_timeout=1),
    )
    with pytest.raises(Unavailable, match="cannot reach the store"):
        S3Storage(closed, BUCKET, "", endpoint="http://127.0.0.1:1").list()


@pytest.fixture
def own_server() -> Iterator[ThrowawayS3]:
    with ThrowawayS3() as server:
        server.create_bucket(BUCKET)
        yield server


def test_a_server_killed_mid_upload_fails_the_write_and_lists_nothing(
    own_server: ThrowawayS3,
) -> None:
    store = S3Storage(own_server.client(), BUCKET, "kill", endpoint=own_server.endpoint)

    def write() -> None:
        with store.open_write(NAME) as writer:
            writer.write(b"x" * (MIN_PART + 10))
            own_server.pause()
            writer.write(b"y" * MIN_PART)
            writer.commit()

    with pytest.raises(Unavailable, match="cannot reach the store"):
        write()
    own_server.resume()
    assert store.list() == []
    store.remove_partials()
    assert _uploads(store) == []
