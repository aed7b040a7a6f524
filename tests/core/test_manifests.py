"""Manifests: signed JSON round trip, every way one is not to be trusted, the store."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from pgkeep.core import restore_plan
from pgkeep.core.manifests import (
    LEGACY_KEYS,
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
from pgkeep.errors import Corrupt, NotFound, StorageError
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
    assert document["schemaVersion"] == 3
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


def _as_010(**changes: object) -> bytes:
    """Exactly the keys 0.1.0 wrote (schema 1, before signing), with `changes`."""
    document = {k: v for k, v in json.loads(to_json(MANIFEST, SIGNER)).items() if k in LEGACY_KEYS}
    document.update(schemaVersion=1, **changes)
    return json.dumps(document).encode()


BOUND = replace(
    MANIFEST,
    target="shop",
    prefix="main.shop",
    server_id="7312345678901234567",
    database_owner="shop_owner",
    owners=("shop_owner", "reporting"),
    extensions=(("hstore", "1.8"), ("plpgsql", "1.0")),
    plan=restore_plan.Plan(
        "SET a = 1;\n",
        (
            restore_plan.Run("admin", 0, 100, "ab" * 32, (), ((10, 20),)),
            restore_plan.Run(
                "owner", 100, 500, "ef" * 32, (), (), "shop_owner", ((200, 230), (300, 330))
            ),
            restore_plan.Run("loader", 500, 900, "01" * 32, ("SET default_tablespace = '';",)),
            restore_plan.Run("admin", 900, 1000, "cd" * 32),
        ),
        1000,
    ),
)


def test_a_bound_manifest_round_trips_and_binds_its_target_and_prefix() -> None:
    document = json.loads(to_json(BOUND, SIGNER))
    assert (document["target"], document["prefix"]) == ("shop", "main.shop")
    assert document["restorePlan"]["runs"][0] == {
        "as": "admin",
        "owner": "",
        "start": 0,
        "end": 100,
        "sha256": "ab" * 32,
        "state": [],
        "skip": [[10, 20]],
        "owned": [],
    }
    assert from_json(to_json(BOUND, SIGNER), NAME, SIGNER).manifest == BOUND
    for key, value in (("target", "prod"), ("prefix", "prod"), ("restorePlan", None)):
        edited = {**document, key: value}
        assert from_json(json.dumps(edited).encode(), NAME, SIGNER).trust is Trust.BAD_SIGNATURE


def _run(**changes: object) -> dict[str, object]:
    run = {"as": "loader", "owner": "", "start": 0, "end": 1, "sha256": "ab" * 32}
    return {**run, "state": [], "skip": [], "owned": [], **changes}


@pytest.mark.parametrize(
    "plan",
    [
        {"version": 3, "preamble": "", "size": 1, "runs": []},
        {"version": 2, "preamble": "", "size": 5, "runs": [_run(**{"as": "root"})]},
        {"version": 2, "preamble": "", "size": 5, "runs": [_run(sha256="")]},
        {"version": 2, "preamble": "", "size": 5, "runs": [_run(start=3, end=1)]},
        {"version": 2, "preamble": "", "size": 1, "runs": [_run(end=4)]},
        {"version": 2, "preamble": "", "size": 9, "runs": [_run(end=4, skip=[[3, 6]])]},
        {"version": 2, "preamble": "", "size": 9, "runs": [_run(end=4, owned=[[2, 5]])]},
    ],
    ids=[
        "version",
        "role",
        "without sha256",
        "backwards",
        "past the end",
        "skip outside",
        "owned outside",
    ],
)
def test_a_restore_plan_out_of_shape_is_unreadable(plan: dict[str, object]) -> None:
    document = json.loads(to_json(MANIFEST, SIGNER))
    document.pop("signature")
    document["restorePlan"] = plan
    document["signature"] = SIGNER.sign(document)
    assert from_json(json.dumps(document).encode(), NAME, SIGNER).trust is Trust.UNREADABLE


def test_a_plan_of_an_earlier_version_is_made_again_when_read() -> None:
    """Plans before owners' runs (version 1) ran every schema entry as the admin: such a
    backup is read as one without a plan, and planned again from its bytes."""
    document = json.loads(to_json(BOUND, SIGNER))
    document.pop("signature")
    document["restorePlan"] = {**document["restorePlan"], "version": 1}
    document["signature"] = SIGNER.sign(document)
    read = from_json(json.dumps(document).encode(), NAME, SIGNER)
    assert read.trust is Trust.SIGNED
    assert read.manifest is not None
    assert read.manifest.plan is None


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
        (_edited(signature=None), Trust.BAD_SIGNATURE),  # signing began with schema 2
        (_edited(schemaVersion=2, signature=None), Trust.BAD_SIGNATURE),
        (_edited(signature="forged"), Trust.BAD_SIGNATURE),
        (_edited(signature={"keyId": "0" * 16, "hmac": "0" * 64}), Trust.UNKNOWN_KEY),
        (_edited(schemaVersion=1), Trust.TAMPERED),  # a signed one passed off as 0.1.0's
        (_edited(schemaVersion=1, signature=None), Trust.TAMPERED),  # keys 0.1.0 never wrote
        (_as_010(restrictKey="K"), Trust.TAMPERED),  # a key of the planter's to lift \\restrict
        (_as_010(signature=None), Trust.TAMPERED),
        (_as_010(), Trust.UNSIGNED),  # from before signing, exactly
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
    storage.put(NAME + ".json", _as_010())  # unsigned: recording would sign it
    assert store.record(NAME, Verification(True, T, ())) is None
    assert storage.open_read(NAME + ".json").read(0, 10**6) == _as_010()
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
    legacy = from_json(_as_010(), NAME, SIGNER)
    assert legacy.trust is Trust.UNSIGNED
    assert legacy.manifest == replace(MANIFEST, restrict_key=None)


def test_manifests_are_written_for_people_to_read() -> None:
    text = to_json(MANIFEST, SIGNER).decode()
    assert text.startswith('{\n  "schemaVersion": 3,\n  "filename": ')
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
    """Counts what is opened (and with which listing) and how often bytes are read."""

    def __init__(self, clock: Callable[[], datetime]) -> None:
        super().__init__(clock=clock)
        self.opened = 0
        self.listings: list[StoredObject | None] = []
        self.reads = 0

    def open_read(self, name: str, listed: StoredObject | None = None) -> MemoryReadHandle:
        self.opened += 1
        self.listings.append(listed)
        handle = super().open_read(name, listed)
        storage = self

        class Counted(MemoryReadHandle):
            def iter_range(self, start: int, end: int) -> Iterator[bytes]:
                storage.reads += 1
                return super().iter_range(start, end)

        return Counted(handle._data, handle.info, handle.etag)


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
    assert store.load(NAME, relisted).trust is Trust.MISSING  # a stale listing: not cached
    store.delete(NAME)  # deleting what is gone is fine
    assert store.load(NAME).trust is Trust.MISSING


def test_a_manifest_is_read_once_while_it_stays_the_same_and_opened_as_listed() -> None:
    fixed = datetime(2025, 1, 1, tzinfo=UTC)
    storage = _Counting(clock=lambda: fixed)
    store = ManifestStore(storage, SIGNER)
    store.save(NAME, MANIFEST)
    for _ in range(3):
        assert store.load(NAME).trust is Trust.SIGNED
    assert storage.reads == 1  # opened each time (no listing), its bytes read once
    storage.put(NAME + ".json", to_json(replace(MANIFEST, created_by="bob"), SIGNER))
    [listed] = storage.list()
    assert store.load(NAME, listed).manifest == replace(MANIFEST, created_by="bob")
    assert storage.reads == 2
    assert storage.listings[-1] == listed  # S3 trusts the listing instead of a HEAD


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
            assert threading.current_thread().name.startswith("manifests")
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
    storage.barrier = threading.Barrier(count + 1, timeout=0.1)  # any read now fails
    for name in names:
        assert store.load(name, listed[name]).trust is Trust.SIGNED  # cached by preload
    store.preload(listed)  # all cached: nothing is read


def test_preload_reads_again_at_once_the_manifests_changed_since_cached() -> None:
    count = PRELOAD_MIN
    storage = _Meeting(count)
    store = ManifestStore(storage, SIGNER)
    names = [f"backup-2025-05-06T07-08-{i:02d}.sql.zst" for i in range(count)]
    for name in names:
        storage.put(name + ".json", to_json(replace(MANIFEST, name=name), SIGNER))
    store.preload({o.name[: -len(".json")]: o for o in storage.list()})
    for name in names:
        storage.put(name + ".json", to_json(replace(MANIFEST, name=name, created_by="b"), SIGNER))
    listed = {o.name[: -len(".json")]: o for o in storage.list()}
    storage.barrier = threading.Barrier(count, timeout=10)
    store.preload(listed)  # all changed: read again, all at once
    storage.barrier = threading.Barrier(count + 1, timeout=0.1)  # any read now fails
    for name in names:
        read = store.load(name, listed[name])
        assert read.manifest is not None
        assert read.manifest.created_by == "b"


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
    """A manifest from before signing (schema 1), with `changes`."""
    return _as_010(**changes)


def test_manifests_from_before_globals_and_encryption_read_as_plain_databases() -> None:
    read = from_json(_legacy(), NAME, SIGNER)
    assert read.trust is Trust.UNSIGNED
    assert read.manifest is not None
    assert (read.manifest.kind, read.manifest.flags, read.manifest.recipients) == (
        "database",
        (),
        (),
    )


def test_a_schema_1_manifest_with_a_signature_was_edited() -> None:
    """Schema 1 predates signing: one carrying a signature (or any key 0.1.0 never wrote)
    is a signed manifest passed off as an old one, never importable."""
    signature = json.loads(to_json(MANIFEST, SIGNER))["signature"]
    read = from_json(_legacy(signature=signature), NAME, SIGNER)
    assert (read.trust, read.manifest, read.claimed) == (Trust.TAMPERED, None, None)
    assert "signature" in read.problem


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
    named = from_json(_legacy(filename=other), NAME, SIGNER)
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


class _Commit:
    """A backup being written: its commit sees what the store holds then, and may fail."""

    def __init__(self, storage: MemoryStorage, fails: BaseException | None = None) -> None:
        self.storage = storage
        self.fails = fails
        self.seen: list[bytes | None] = []

    @property
    def bytes_written(self) -> int:
        return 0

    def write(self, chunk: bytes) -> None:
        raise AssertionError("nothing is written through it here")

    def commit(self) -> None:
        try:
            self.seen.append(self.storage.open_read(NAME + ".json").read(0, 10**6))
        except NotFound:
            self.seen.append(None)
        if self.fails is not None:
            raise self.fails

    def __enter__(self) -> _Commit:
        return self

    def __exit__(self, *exc_info: object) -> None:
        pass


def test_a_backup_is_committed_only_once_its_manifest_is_stored_signed() -> None:
    storage = MemoryStorage()
    store = ManifestStore(storage, SIGNER)
    writer = _Commit(storage)
    store.publish(NAME, writer, MANIFEST)
    assert writer.seen == [to_json(MANIFEST, SIGNER)]
    assert store.load(NAME).manifest == MANIFEST


def test_a_copy_is_committed_only_once_its_manifests_own_bytes_are_stored() -> None:
    storage = MemoryStorage()
    store = ManifestStore(storage, SIGNER)
    raw = _edited(createdBy="bob")
    writer = _Commit(storage)
    store.publish(NAME, writer, None, raw)
    assert writer.seen == [raw]


@pytest.mark.parametrize("failure", [StorageError("disk full"), KeyboardInterrupt()])
def test_a_commit_that_fails_takes_its_manifest_back(failure: BaseException) -> None:
    storage = MemoryStorage()
    store = ManifestStore(storage, SIGNER)
    assert store.load(NAME).trust is Trust.MISSING
    with pytest.raises(type(failure)):
        store.publish(NAME, _Commit(storage, failure), MANIFEST)
    assert storage.list() == []
    assert store.load(NAME).trust is Trust.MISSING
    with pytest.raises(type(failure)):
        store.publish(NAME, _Commit(storage, failure), None, _edited())
    assert storage.list() == []


def test_a_manifest_for_another_backup_is_never_published() -> None:
    storage = MemoryStorage()
    writer = _Commit(storage)
    other = replace(MANIFEST, name="backup-2025-05-06T07-08-10.sql.zst")
    with pytest.raises(Corrupt, match="cannot be saved as"):
        ManifestStore(storage, SIGNER).publish(NAME, writer, other)
    assert writer.seen == []
    assert storage.list() == []


def test_a_record_waits_for_another_writer_of_the_same_manifest() -> None:
    """An import (or another verify) updating a manifest holds it: a record made meanwhile
    lands after, on what that writer left."""
    store = ManifestStore(MemoryStorage(), SIGNER)
    store.save(NAME, MANIFEST)
    recorded: list[Manifest | None] = []
    verification = Verification(True, T, ())
    thread = threading.Thread(target=lambda: recorded.append(store.record(NAME, verification)))
    with store.updating(NAME):
        thread.start()
        thread.join(0.3)
        assert thread.is_alive()
        store.save(NAME, replace(MANIFEST, created_by="bob"))
    thread.join(10)
    assert recorded == [replace(MANIFEST, created_by="bob", verification=verification)]
    with store.updating("backup-2025-05-06T07-08-10.sql.zst"):  # another backup's: no wait
        assert store.record(NAME, verification) is not None
