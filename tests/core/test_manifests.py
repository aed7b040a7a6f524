"""Manifests: signed JSON round trip, every way one is not to be trusted, the store."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from pgkeep.core.manifests import (
    MAX_MANIFEST_BYTES,
    PRELOAD_MIN,
    ManifestStore,
    Read,
    from_json,
    to_json,
)
from pgkeep.core.models import (
    Check,
    Compression,
    DumpFormat,
    Manifest,
    StoredObject,
    Trust,
    Verification,
)
from pgkeep.core.signing import Signer
from pgkeep.errors import StorageError
from pgkeep.storage import MemoryStorage
from pgkeep.storage.memory import MemoryReadHandle

T = datetime(2025, 5, 6, 7, 8, 9, 123000, tzinfo=UTC)
NAME = "backup-2025-05-06T07-08-09.sql.zst"
SIGNER = Signer(b"k" * 16 + b"0123456789abcdef")
MANIFEST = Manifest(
    name=NAME,
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
    restrict_key="abc123",
)


def test_manifest_json_round_trip_signed() -> None:
    document = json.loads(to_json(MANIFEST, SIGNER))
    assert document["schemaVersion"] == 2
    assert document["durationMs"] == 2005
    assert document["startedAt"] == "2025-05-06T07:08:09.123Z"
    assert document["restrictKey"] == "abc123"
    assert document["signature"]["keyId"] == SIGNER.key_id
    read = from_json(to_json(MANIFEST, SIGNER), NAME, SIGNER)
    assert (read.manifest, read.trust) == (MANIFEST, Trust.SIGNED)
    verified = Verification(True, T, (Check("sha256", True, "ok"),))
    with_check = Manifest(**{**MANIFEST.__dict__, "verification": verified})
    assert from_json(to_json(with_check, SIGNER), NAME, SIGNER).manifest == with_check


def _edited(**changes: object) -> bytes:
    document = json.loads(to_json(MANIFEST, SIGNER))
    document.update(changes)
    return json.dumps(document).encode()


@pytest.mark.parametrize(
    ("data", "trust"),
    [
        (b"", Trust.UNREADABLE),
        (b"not json", Trust.UNREADABLE),
        (b"[]", Trust.UNREADABLE),
        (b'{"schemaVersion": 99}', Trust.UNREADABLE),
        (b'{"schemaVersion": 2}', Trust.UNREADABLE),
        (_edited(sha256="cd" * 32), Trust.BAD_SIGNATURE),  # the bytes' checksum swapped
        (_edited(database="other"), Trust.BAD_SIGNATURE),
        (_edited(restrictKey=None), Trust.BAD_SIGNATURE),  # the \\restrict check removed
        (_edited(signature=None), Trust.UNSIGNED),
        (_edited(signature="forged"), Trust.BAD_SIGNATURE),
        (_edited(signature={"keyId": "0" * 16, "hmac": "0" * 64}), Trust.UNKNOWN_KEY),
        (_edited(schemaVersion=1, signature=None), Trust.UNSIGNED),  # from before signing
    ],
)
def test_manifest_not_to_be_trusted_says_why(data: bytes, trust: Trust) -> None:
    read = from_json(data, NAME, SIGNER)
    assert read.trust is trust
    assert read.manifest is None or trust is Trust.UNSIGNED


def test_manifest_signed_for_another_backup_is_refused() -> None:
    """A good manifest copied beside another backup: the name asked for decides, not its own."""
    read = from_json(to_json(MANIFEST, SIGNER), "backup-2025-05-06T07-08-10.sql.zst", SIGNER)
    assert (read.manifest, read.trust) == (None, Trust.OTHER_BACKUP)


def test_manifest_signed_before_a_rotation_is_still_good() -> None:
    old = Signer(b"o" * 32)
    rotated = Signer(b"n" * 32, old=[b"o" * 32])
    assert from_json(to_json(MANIFEST, old), NAME, rotated).trust is Trust.SIGNED
    assert from_json(to_json(MANIFEST, old), NAME, Signer(b"n" * 32)).trust is Trust.UNKNOWN_KEY
    assert json.loads(to_json(MANIFEST, rotated))["signature"]["keyId"] == rotated.key_id


def test_manifest_store_caches_sees_changes_and_records_only_signed() -> None:
    storage = MemoryStorage()
    store = ManifestStore(storage, SIGNER)
    assert store.load(NAME).trust is Trust.MISSING
    store.save(NAME, MANIFEST)
    assert store.load(NAME).manifest == MANIFEST
    recorded = store.record(NAME, Verification(False, T, ()))
    assert recorded is not None
    assert store.load(NAME).manifest == recorded
    storage.put(NAME + ".json", _edited(signature=None))
    assert store.record(NAME, Verification(True, T, ())) is None  # never written
    assert json.loads(storage.open_read(NAME + ".json").read(0, 10**6))["signature"] is None
    store.delete(NAME)
    assert store.load(NAME).trust is Trust.MISSING


def test_manifest_store_refuses_to_save_under_another_name() -> None:
    store = ManifestStore(MemoryStorage(), SIGNER)
    with pytest.raises(Exception, match="cannot be saved"):
        store.save("backup-2025-05-06T07-08-10.sql.zst", MANIFEST)


def test_manifest_records_are_serialized() -> None:
    """Concurrent verifies of one backup: every record lands on the latest manifest."""
    storage = MemoryStorage()
    store = ManifestStore(storage, SIGNER)
    store.save(NAME, MANIFEST)
    errors: list[BaseException] = []

    def record(i: int) -> None:
        try:
            store.record(NAME, Verification(True, T + timedelta(seconds=i), ()))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=record, args=(i,)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert store.load(NAME).trust is Trust.SIGNED


def test_manifest_orphans() -> None:
    storage = MemoryStorage()
    store = ManifestStore(storage, SIGNER)
    store.save(NAME, MANIFEST)
    storage.put("notes.json", b"{}")
    assert store.orphans(storage.list()) == [NAME + ".json"]
    storage.put(NAME, b"data")
    assert store.orphans(storage.list()) == []


class _Failing(MemoryStorage):
    """A real store whose manifests cannot be opened (a disk error, an unreadable file)."""

    def open_read(self, name: str, listed: StoredObject | None = None) -> MemoryReadHandle:
        if name.endswith(".json"):
            raise StorageError("disk on fire")
        return super().open_read(name, listed)


def test_why_a_manifest_is_unreadable_is_kept() -> None:
    def problem(data: bytes) -> str:
        read = from_json(data, NAME, SIGNER)
        assert read.trust is Trust.UNREADABLE
        return read.problem

    assert problem(b"[]") == "not a JSON object"
    assert problem(b'{"schemaVersion": 99}') == "unknown schema '99'"
    assert problem(_edited(startedAt="2025-05-06T07:08:09")).startswith("time without a zone")
    store = ManifestStore(_Failing(), SIGNER)
    assert store.load(NAME) == Read(None, Trust.UNREADABLE, "disk on fire")


def test_what_an_untrusted_manifest_claims_is_kept_for_import_only() -> None:
    forged = from_json(_edited(signature={"keyId": "0" * 16, "hmac": "0"}), NAME, SIGNER)
    assert (forged.manifest, forged.claimed) == (None, MANIFEST)
    good = from_json(to_json(MANIFEST, SIGNER), NAME, SIGNER)
    assert good.claimed == MANIFEST
    other = from_json(to_json(MANIFEST, SIGNER), "backup-2025-05-06T07-08-10.sql", SIGNER)
    assert other.problem == f"it names '{NAME}'"


def test_manifests_without_optional_values_read_back() -> None:
    bare = replace(MANIFEST, row_counts=None, restrict_key=None)
    assert from_json(to_json(bare, SIGNER), NAME, SIGNER).manifest == bare
    document = json.loads(to_json(MANIFEST, SIGNER))
    document["schemaVersion"] = 1
    del document["signature"]
    del document["restrictKey"]
    legacy = from_json(json.dumps(document).encode(), NAME, SIGNER)
    assert legacy.trust is Trust.UNSIGNED
    assert legacy.manifest == replace(MANIFEST, restrict_key=None)


def test_manifests_are_written_for_people_to_read() -> None:
    text = to_json(MANIFEST, SIGNER).decode()
    assert text.startswith('{\n  "schemaVersion": 2,\n  "filename": ')
    assert text.endswith("}\n")


def test_the_size_limit_is_exact() -> None:
    storage = MemoryStorage()
    store = ManifestStore(storage, SIGNER)
    data = to_json(MANIFEST, SIGNER)
    exactly = data.rstrip(b"\n") + b" " * (MAX_MANIFEST_BYTES - len(data.rstrip(b"\n")))
    storage.put(NAME + ".json", exactly)
    assert store.load(NAME).trust is Trust.SIGNED
    storage.put(NAME + ".json", exactly + b" ")
    assert store.load(NAME) == Read(
        None, Trust.UNREADABLE, "larger than any manifest pgkeep writes"
    )


def test_a_manifest_larger_than_one_read_chunk_reads_whole() -> None:
    many = replace(MANIFEST, row_counts={f"public.t{i}": i for i in range(20_000)})
    storage = MemoryStorage()
    ManifestStore(storage, SIGNER).save(NAME, many)
    assert storage.open_read(NAME + ".json").info.size_bytes > 2 * 256 * 1024
    assert ManifestStore(storage, SIGNER).load(NAME).manifest == many


class _Counting(MemoryStorage):
    def __init__(self, clock: Callable[[], datetime]) -> None:
        super().__init__(clock=clock)
        self.opened = 0

    def open_read(self, name: str, listed: StoredObject | None = None) -> MemoryReadHandle:
        self.opened += 1
        return super().open_read(name, listed)


def test_the_cache_answers_until_the_object_changes() -> None:
    fixed = datetime(2025, 1, 1, tzinfo=UTC)
    storage = _Counting(clock=lambda: fixed)
    store = ManifestStore(storage, SIGNER)
    store.save(NAME, MANIFEST)
    assert store.load(NAME).trust is Trust.SIGNED
    [listed] = storage.list()
    opened = storage.opened
    assert store.load(NAME, listed).trust is Trust.SIGNED  # from the listing: not opened
    assert storage.opened == opened
    # Same size, same time, other bytes: the store's tag tells them apart.
    forged = to_json(MANIFEST, SIGNER).replace(b'"alice"', b'"mally"')
    storage.put(NAME + ".json", forged)
    [relisted] = storage.list()
    assert store.load(NAME, relisted).trust is Trust.BAD_SIGNATURE
    store.delete(NAME)
    store.delete(NAME)  # deleting what is gone is fine
    assert store.load(NAME).trust is Trust.MISSING


def test_record_writes_the_verification_given() -> None:
    store = ManifestStore(MemoryStorage(), SIGNER)
    store.save(NAME, MANIFEST)
    verification = Verification(True, T, (Check("sha256", True, "ok"),))
    recorded = store.record(NAME, verification)
    assert recorded == replace(MANIFEST, verification=verification)
    assert store.load(NAME).manifest == recorded


class _Meeting(MemoryStorage):
    """Manifest reads wait for each other: they only pass if PRELOAD_MIN run at once."""

    def __init__(self, parties: int) -> None:
        super().__init__()
        self.barrier = threading.Barrier(parties, timeout=10)

    def open_read(self, name: str, listed: StoredObject | None = None) -> MemoryReadHandle:
        if name.endswith(".json"):
            self.barrier.wait()
        return super().open_read(name, listed)


def test_preload_reads_many_manifests_at_once_and_caches_them() -> None:
    count = PRELOAD_MIN
    storage = _Meeting(count)
    store = ManifestStore(storage, SIGNER)
    names = [f"backup-2025-05-06T07-08-{i:02d}.sql.zst" for i in range(count)]
    for name in names:
        storage.put(name + ".json", to_json(replace(MANIFEST, name=name), SIGNER))
    listed = {o.name[: -len(".json")]: o for o in storage.list()}
    store.preload(listed)  # sequential reads would break the barrier (BrokenBarrierError)
    storage.barrier = threading.Barrier(2, timeout=0.1)  # any read now fails
    for name in names:
        assert store.load(name, listed[name]).trust is Trust.SIGNED  # cached by preload
    store.preload(listed)  # all cached: nothing is read


GLOBALS = replace(
    MANIFEST,
    name="backup-2025-05-06T07-08-09.sql.age",
    compression=Compression.NONE,
    kind="globals",
    flags=("--no-role-passwords",),
    recipients=("age:1a2b3c", "age:4d5e6f"),
)


def test_globals_flags_and_recipients_are_written_and_read_back() -> None:
    document = json.loads(to_json(GLOBALS, SIGNER))
    assert document["kind"] == "globals"
    assert document["flags"] == ["--no-role-passwords"]
    assert document["encryption"] == {"format": "age", "recipients": ["age:1a2b3c", "age:4d5e6f"]}
    assert json.loads(to_json(MANIFEST, SIGNER))["encryption"] is None
    read = from_json(to_json(GLOBALS, SIGNER), GLOBALS.name, SIGNER)
    assert (read.manifest, read.trust) == (GLOBALS, Trust.SIGNED)


def _legacy(**changes: object) -> bytes:
    """A manifest from before signing (schema 1), with `changes`; None removes a key."""
    document = json.loads(to_json(MANIFEST, SIGNER))
    document.update(schemaVersion=1, **changes)
    return json.dumps({k: v for k, v in document.items() if v is not None}).encode()


def test_manifests_from_before_globals_and_encryption_read_as_plain_databases() -> None:
    read = from_json(_legacy(signature=None, kind=None, flags=None, encryption=None), NAME, SIGNER)
    assert read.trust is Trust.UNSIGNED
    assert read.manifest is not None
    assert (read.manifest.kind, read.manifest.flags, read.manifest.recipients) == (
        "database",
        (),
        (),
    )


def test_a_schema_1_manifest_is_unsigned_whatever_signature_it_carries() -> None:
    """Schema 1 predates signing: a signature in one is never checked, so never trusted."""
    read = from_json(_legacy(), NAME, SIGNER)
    assert read.trust is Trust.UNSIGNED


@pytest.mark.parametrize(
    "encryption",
    [
        {"format": "gpg", "recipients": ["age:1a2b3c"]},
        {"format": "age", "recipients": []},
        {"format": "age"},
        {"recipients": ["age:1a2b3c"]},
    ],
)
def test_unknown_encryption_makes_a_manifest_unreadable(encryption: dict[str, object]) -> None:
    read = from_json(_legacy(encryption=encryption), NAME, SIGNER)
    assert (read.trust, read.problem) == (Trust.UNREADABLE, "unknown encryption")


def test_problems_quote_bounded_pieces_of_what_was_found() -> None:
    schema = from_json(json.dumps({"schemaVersion": "v" * 30}).encode(), NAME, SIGNER)
    assert schema.problem == f"unknown schema {'v' * 20!r}"
    bad_time = from_json(_legacy(startedAt="x" * 300), NAME, SIGNER)
    assert bad_time.trust is Trust.UNREADABLE
    assert len(bad_time.problem) == 200
    other = "backup-2025-05-06T07-08-10" + "9" * 100 + ".sql"
    named = from_json(_legacy(signature=None, filename=other), NAME, SIGNER)
    assert (named.trust, named.problem) == (Trust.OTHER_BACKUP, f"it names {other[:80]!a}")


class _BrokenRead(MemoryStorage):
    """A real store whose manifests open but break while being read."""

    def open_read(self, name: str, listed: StoredObject | None = None) -> MemoryReadHandle:
        handle = super().open_read(name, listed)
        if not name.endswith(".json"):
            return handle
        return _BrokenHandle(b"", handle.info, handle.etag)


class _BrokenHandle(MemoryReadHandle):
    def iter_range(self, start: int, end: int) -> Iterator[bytes]:
        raise StorageError("connection reset mid-read")


def test_a_manifest_that_breaks_while_being_read_is_unreadable_not_missing() -> None:
    storage = _BrokenRead()
    storage.put(NAME + ".json", to_json(MANIFEST, SIGNER))
    read = ManifestStore(storage, SIGNER).load(NAME)
    assert read == Read(None, Trust.UNREADABLE, "connection reset mid-read")
