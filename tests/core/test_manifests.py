"""Manifests: JSON round trip, schema checks, the cache, orphans."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from pgkeep.core.manifests import ManifestStore, from_json, to_json
from pgkeep.core.models import Check, Compression, DumpFormat, Manifest, Verification
from pgkeep.errors import Corrupt
from pgkeep.storage import MemoryStorage

T = datetime(2025, 5, 6, 7, 8, 9, 123000, tzinfo=UTC)
MANIFEST = Manifest(
    name="backup-2025-05-06T07-08-09.sql.zst",
    format=DumpFormat.PLAIN,
    compression=Compression.ZSTD,
    level=3,
    size_bytes=1234,
    sha256="ab" * 32,
    database="shop",
    server_version="18.6",
    pg_dump_version="18.6",
    started_at=T,
    finished_at=T + timedelta(seconds=2, milliseconds=5),
    created_by="alice",
    row_counts={"public.customer": 500, '"Ödd".t': 0},
)


def test_manifest_json_round_trip() -> None:
    document = json.loads(to_json(MANIFEST))
    assert document["schemaVersion"] == 1
    assert document["durationMs"] == 2005
    assert document["startedAt"] == "2025-05-06T07:08:09.123Z"
    assert from_json(to_json(MANIFEST), MANIFEST.name) == MANIFEST
    verified = Verification(True, T, (Check("sha256", True, "ok"),))
    with_check = Manifest(**{**MANIFEST.__dict__, "verification": verified})
    assert from_json(to_json(with_check), MANIFEST.name) == with_check


@pytest.mark.parametrize(
    "data", [b"", b"not json", b"[]", b'{"schemaVersion": 99}', b'{"schemaVersion": 1}']
)
def test_manifest_unreadable_is_corrupt(data: bytes) -> None:
    with pytest.raises(Corrupt, match="manifest of"):
        from_json(data, "backup-2025-05-06T07-08-09.sql")


def test_manifest_store_caches_and_sees_changes() -> None:
    storage = MemoryStorage()
    store = ManifestStore(storage)
    assert store.load(MANIFEST.name) is None
    store.save(MANIFEST)
    assert store.load(MANIFEST.name) == MANIFEST
    recorded = store.record(MANIFEST, Verification(False, T, ()))
    assert store.load(MANIFEST.name) == recorded
    store.delete(MANIFEST.name)
    assert store.load(MANIFEST.name) is None


def test_manifest_orphans() -> None:
    storage = MemoryStorage()
    store = ManifestStore(storage)
    store.save(MANIFEST)
    storage.put("notes.json", b"{}")
    assert store.orphans(storage.list()) == [MANIFEST.name + ".json"]
    storage.put(MANIFEST.name, b"data")
    assert store.orphans(storage.list()) == []
