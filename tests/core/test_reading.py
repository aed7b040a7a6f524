"""The one reader on its own: one pinned read, hashed as it streams, its last chunk held back
until the sha256 matches; what it found, and the checks a verification reports from it."""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Generator, Iterator
from dataclasses import replace
from datetime import UTC, datetime

import pyrage
import pytest

from pgkeep.core import encryption
from pgkeep.core.control import Control
from pgkeep.core.models import Backup, Check, Compression, DumpFormat, Manifest, StoredObject
from pgkeep.core.reading import Outcome, Reading, integrity_checks, is_mismatch
from pgkeep.errors import Cancelled, Corrupt
from pgkeep.storage import MemoryStorage, memory
from pgkeep.storage.memory import MemoryReadHandle
from tests.core.test_manifests import MANIFEST

AT = datetime(2025, 5, 6, 7, 8, 9, tzinfo=UTC)
NAME = "backup-2025-05-06T07-08-09.sql"
DATA = b"".join(b"row %d\n" % i for i in range(40))  # 270 bytes: chunks of 16 below


@pytest.fixture(autouse=True)
def _small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory, "CHUNK_SIZE", 16)


def _reading(
    stored: bytes = DATA,
    *,
    name: str = NAME,
    signed: bytes | None = None,
    manifest: bool = True,
    keys: encryption.Keys = encryption.NO_KEYS,
    recipients: tuple[str, ...] = (),
    control: Control | None = None,
    pinned: bool = False,
    seen: list[int] | None = None,
) -> Reading:
    """One read of `stored` under `name`, its manifest signing the sha256 of `signed` (by
    default the stored bytes themselves)."""
    storage = MemoryStorage()
    storage.put(name, stored)
    compression = Compression.GZIP if ".gz" in name else Compression.NONE
    made = replace(
        MANIFEST,
        name=name,
        compression=compression,
        size_bytes=len(stored),
        sha256=hashlib.sha256(stored if signed is None else signed).hexdigest(),
        recipients=recipients,
    )
    backup = Backup(
        name,
        len(stored),
        AT,
        AT,
        DumpFormat.PLAIN,
        compression,
        made if manifest else None,
        stored=storage.list()[0] if pinned else None,
    )
    on_bytes = seen.append if seen is not None else (lambda n: None)
    return Reading(storage, backup, keys, control, on_bytes)


def _consumed(chunks: Iterator[bytes]) -> tuple[bytes, Exception | None]:
    """What a consumer got before the read stopped, and why it stopped (None: the end)."""
    got = b""
    try:
        for chunk in chunks:
            got += chunk
    except Corrupt as exc:
        return got, exc
    return got, None


def test_the_stored_bytes_are_streamed_whole_when_they_match() -> None:
    seen: list[int] = []
    reading = _reading(seen=seen)
    assert _consumed(reading.stored()) == (DATA, None)
    assert seen == [16] * 16 + [14]
    assert reading.outcome == Outcome(hashlib.sha256(DATA).hexdigest(), 0, "", True, True, "")


def test_bytes_that_are_not_the_signed_ones_never_reach_their_end() -> None:
    reading = _reading(signed=b"other bytes")
    got, stopped = _consumed(reading.stored())
    assert got == DATA[:256]  # the last chunk held back
    assert isinstance(stopped, Corrupt)
    assert stopped.message == f"backup {NAME!r} does not match its manifest"
    assert stopped.details == (
        f"sha256 is {hashlib.sha256(DATA).hexdigest()}, "
        f"manifest says {hashlib.sha256(b'other bytes').hexdigest()}"
    )
    assert is_mismatch(stopped, reading.backup)
    assert reading.outcome.complete  # read to the end: it proves they differ


def test_without_a_manifest_nothing_is_compared_or_held_back() -> None:
    reading = _reading(manifest=False)
    assert reading.expected is None
    assert _consumed(reading.stored()) == (DATA, None)
    assert _reading().expected == hashlib.sha256(DATA).hexdigest()


def test_the_read_is_pinned_to_the_version_the_backup_was_found_as() -> None:
    reading = _reading(pinned=True)
    assert _consumed(reading.stored()) == (DATA, None)
    assert reading.backup.stored is not None
    moved = replace(reading.backup, stored=replace(reading.backup.stored, etag='"m0"'))
    changed = Reading(reading._storage, moved)
    got, stopped = _consumed(changed.stored())
    assert got == b""
    assert isinstance(stopped, Corrupt)
    assert stopped.message == f"backup {NAME!r} changed since it was checked"
    assert stopped.details == "it was replaced in the store while being verified or restored"
    assert not is_mismatch(stopped, moved)
    assert changed.outcome.stopped == f"backup {NAME!r} changed since it was checked"
    assert not changed.outcome.complete
    with pytest.raises(Corrupt, match="changed since"):  # finish says so too: not a mismatch
        Reading(reading._storage, moved).finish()


def test_a_controlled_read_reports_its_progress_and_stops_when_cancelled() -> None:
    control = Control()
    reading = _reading(control=control)
    chunks = reading.stored()
    assert next(chunks) == DATA[:16]
    assert control.expected_bytes == len(DATA)
    assert next(chunks) == DATA[16:32]
    assert control.progress.bytes_written == 48  # counted as read, one chunk ahead
    control.cancel()
    with pytest.raises(Cancelled):
        next(chunks)
    assert not reading.outcome.complete


def test_finish_reads_what_the_consumer_left_and_says_what_it_found() -> None:
    reading = _reading(signed=b"other")
    chunks = reading.stored()
    next(chunks)
    outcome = reading.finish()
    assert outcome.complete
    assert outcome.sha256 == hashlib.sha256(DATA).hexdigest()
    assert _reading().finish().complete  # never started: read now
    closed = _reading()
    stored = closed.stored()
    next(stored)
    assert isinstance(stored, Generator)
    stored.close()
    assert not closed.finish().complete  # a closed read cannot go on


def test_the_content_is_the_dump_decoded_as_it_streams() -> None:
    packed = gzip.compress(DATA)
    reading = _reading(packed, name=NAME + ".gz")
    assert b"".join(reading.content()) == DATA
    assert reading.outcome.decoded_bytes == len(DATA)
    assert reading.outcome.problem == ""


def test_content_that_does_not_decode_says_why() -> None:
    reading = _reading(b"not gzip at all, not at all", name=NAME + ".gz")
    with pytest.raises(Corrupt) as caught:
        b"".join(reading.content())
    assert reading.outcome.problem == caught.value.message
    assert reading.outcome.problem


def test_damaged_content_is_still_decoded_to_say_whether_it_was_readable() -> None:
    """Bytes that differ from the signed ones are never handed on, but whether they would
    have decoded is worth saying."""
    packed = gzip.compress(DATA)
    reading = _reading(packed, name=NAME + ".gz", signed=b"other")
    got, stopped = _consumed(reading.content())
    assert isinstance(stopped, Corrupt)
    assert is_mismatch(stopped, reading.backup)
    assert len(got) < len(DATA)
    assert reading.outcome.problem == ""
    assert reading.outcome.decoded_bytes == len(DATA)
    cut = _reading(packed[:-12], name=NAME + ".gz", signed=b"other")
    _, stopped = _consumed(cut.content())
    assert isinstance(stopped, Corrupt)
    assert is_mismatch(stopped, cut.backup)
    assert cut.outcome.problem  # the end is missing: it would not have decoded


def test_inspect_reads_everything_once_and_never_raises_for_the_backups_faults() -> None:
    found = _reading().inspect()
    assert found == Outcome(hashlib.sha256(DATA).hexdigest(), len(DATA), "", True, True, "")
    damaged = _reading(signed=b"other").inspect()
    assert (damaged.complete, damaged.problem) == (True, "")
    assert damaged.sha256 == hashlib.sha256(DATA).hexdigest()
    broken = _reading(b"not gzip at all, not at all", name=NAME + ".gz").inspect()
    assert broken.problem
    assert broken.complete  # hashed to the end all the same
    assert broken.sha256 == hashlib.sha256(b"not gzip at all, not at all").hexdigest()


def test_inspect_of_an_encrypted_backup_without_an_identity_checks_its_header() -> None:
    identity = pyrage.x25519.Identity.generate()
    public = str(identity.to_public())
    sealed = pyrage.encrypt(DATA, [identity.to_public()])
    name = NAME + ".age"
    fingerprints = (encryption.fingerprint(public),)
    closed = _reading(sealed, name=name, recipients=fingerprints)
    assert not closed.opened
    outcome = closed.inspect()
    assert (outcome.opened, outcome.problem, outcome.decoded_bytes) == (False, "", 0)
    garbage = _reading(b"age-encryption.org/v1\n-> junk\n", name=name, recipients=fingerprints)
    assert garbage.inspect().problem
    keys = encryption.Keys((public,), (identity,))
    opened = _reading(sealed, name=name, recipients=fingerprints, keys=keys)
    assert opened.opened
    assert opened.inspect().decoded_bytes == len(DATA)


def _backup(**changes: object) -> Backup:
    manifest: Manifest = replace(MANIFEST, **changes)  # type: ignore[arg-type]
    return Backup(NAME, 1, AT, AT, compression=manifest.compression, manifest=manifest)


SHA = MANIFEST.sha256


@pytest.mark.parametrize(
    ("backup", "outcome", "checks"),
    [
        (
            _backup(compression=Compression.NONE),
            Outcome(SHA, 250, "", True, True),
            [
                Check("sha256", True, f"matches the manifest ({SHA[:12]}…)"),
                Check("readable", True, "read end to end: 250 bytes"),
            ],
        ),
        (
            _backup(),
            Outcome(SHA, 250, "", True, True),
            [
                Check("sha256", True, f"matches the manifest ({SHA[:12]}…)"),
                Check("readable", True, "decompressed end to end: 250 bytes"),
            ],
        ),
        (
            _backup(compression=Compression.NONE),
            Outcome("cd" * 32, 0, "", True, True),
            [
                Check("sha256", False, f"is {'cd' * 32}, manifest says {SHA}"),
                Check("readable", False, "the backup holds no data"),
            ],
        ),
        (
            _backup(),
            Outcome(SHA, 10, "not gzip", True, False, ""),
            [Check("sha256", False, "not read to the end"), Check("readable", False, "not gzip")],
        ),
        (
            _backup(),
            Outcome(SHA, 0, "", True, False, "it changed"),
            [
                Check("sha256", False, "it changed"),
                Check("readable", False, "the backup holds no data"),
            ],
        ),
        (
            replace(_backup(compression=Compression.NONE), manifest=None),
            Outcome(SHA, 1, "", True, True),
            [
                Check("sha256", False, "nothing to compare with: no manifest"),
                Check("readable", True, "read end to end: 1 bytes"),
            ],
        ),
    ],
)
def test_what_a_read_proves(backup: Backup, outcome: Outcome, checks: list[Check]) -> None:
    assert integrity_checks(backup, outcome) == checks


def test_what_a_read_of_an_encrypted_backup_proves() -> None:
    encrypted = replace(_backup(recipients=("a1", "b2")), name=NAME + ".zst.age")
    unopened = integrity_checks(encrypted, Outcome(SHA, 0, "", False, True))
    assert unopened[1] == Check(
        "readable",
        True,
        "read end to end; age header valid; not decrypted (no identity for recipients a1, b2)",
    )
    opened = integrity_checks(encrypted, Outcome(SHA, 7, "", True, True))
    assert opened[1] == Check("readable", True, "decrypted and decompressed end to end: 7 bytes")
    plain = replace(
        encrypted,
        name=NAME + ".age",
        manifest=replace(MANIFEST, compression=Compression.NONE, recipients=("a1", "b2")),
    )
    plain = replace(plain, compression=Compression.NONE)
    assert integrity_checks(plain, Outcome(SHA, 7, "", True, True))[1] == Check(
        "readable", True, "decrypted end to end: 7 bytes"
    )


def test_an_encrypted_backup_is_decrypted_with_the_readers_keys() -> None:
    identity = pyrage.x25519.Identity.generate()
    public = str(identity.to_public())
    sealed = pyrage.encrypt(DATA, [identity.to_public()])
    keys = encryption.Keys((public,), (identity,))
    fingerprints = (encryption.fingerprint(public),)
    reading = _reading(sealed, name=NAME + ".age", recipients=fingerprints, keys=keys)
    assert b"".join(reading.content()) == DATA


class _Listed(MemoryStorage):
    """Records the listing each read was opened with (S3 trusts it instead of a HEAD)."""

    def __init__(self) -> None:
        super().__init__()
        self.opened_with: list[StoredObject | None] = []

    def open_read(self, name: str, listed: StoredObject | None = None) -> MemoryReadHandle:
        self.opened_with.append(listed)
        return super().open_read(name, listed)


def test_the_read_opens_the_object_as_it_was_listed() -> None:
    storage = _Listed()
    storage.put(NAME, DATA)
    [listed] = storage.list()
    backup = replace(_reading().backup, stored=listed)
    assert b"".join(Reading(storage, backup).stored()) == DATA
    assert storage.opened_with == [listed]
