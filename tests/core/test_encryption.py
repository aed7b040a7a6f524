"""age in the byte chain: streamed both ways, interoperable with the reference `age` command,
damage and missing keys told apart."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pyrage
import pytest

from pgkeep.core import encryption, naming, pipeline
from pgkeep.core.compression import decompressor
from pgkeep.core.models import Backup, BackupOptions, Compression, DumpFormat, Manifest
from pgkeep.core.reading import Outcome, Reading
from pgkeep.errors import Corrupt, NoIdentity
from pgkeep.storage import MemoryStorage

DATA = b"".join(b"row %d: marker-0f3c2a in the data\n" % i for i in range(200_000))
AGE = shutil.which("age")
needs_age = pytest.mark.skipif(AGE is None, reason="Debian's age is not installed (make test does)")


def age_keygen(directory: Path) -> tuple[Path, str]:
    """A key made by the reference `age-keygen`: its identity file and its recipient."""
    key_file = directory / "key.txt"
    subprocess.run(["age-keygen", "-o", str(key_file)], check=True, capture_output=True)
    public = subprocess.run(
        ["age-keygen", "-y", str(key_file)], check=True, capture_output=True, text=True
    ).stdout.strip()
    return key_file, public


def _key() -> tuple[str, object]:
    identity = pyrage.x25519.Identity.generate()
    return str(identity.to_public()), identity


def _chunks(data: bytes, size: int = 65_537) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


def _seal(data: bytes, options: BackupOptions, recipients: tuple[str, ...]) -> bytes:
    storage = MemoryStorage()
    with storage.open_write("x") as writer:
        chain = pipeline.WriteChain(options, writer, recipients)
        for chunk in _chunks(data):
            chain.feed(chunk)
        chain.finish("x")
        writer.commit()
    handle = storage.open_read("x")
    return b"".join(handle.iter_range(0, handle.info.size_bytes))


def _sealing(compression: Compression, recipients: tuple[str, ...]) -> pipeline.Sealing:
    return pipeline.Sealing(compression, True, tuple(encryption.fingerprint(r) for r in recipients))


_EXTENSIONS = {Compression.NONE: ".sql.age", Compression.GZIP: ".sql.gz.age"}
_EXTENSIONS[Compression.ZSTD] = ".sql.zst.age"


def _inspect(
    stored: bytes, sealing: pipeline.Sealing, keys: encryption.Keys = encryption.NO_KEYS
) -> Outcome:
    """What the one reader finds in stored bytes sealed so (their manifest records them)."""
    storage = MemoryStorage()
    name = "backup-2025-01-02T03-04-05" + _EXTENSIONS[sealing.compression]
    storage.put(name, stored)
    at = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    manifest = Manifest(
        name,
        DumpFormat.PLAIN,
        sealing.compression,
        0,
        len(stored),
        "",
        "db",
        "18",
        "18",
        at,
        at,
        "t",
        None,
        recipients=sealing.recipients,
    )
    fmt, compression = naming.kind(name)
    manifest = replace(manifest, sha256=hashlib.sha256(stored).hexdigest())
    backup = Backup(name, len(stored), at, at, fmt, compression, manifest)
    return Reading(storage, backup, keys).inspect()


@pytest.mark.parametrize("compression", list(Compression))
def test_the_chain_compresses_then_encrypts_and_back(compression: Compression) -> None:
    public, identity = _key()
    stored = _seal(DATA, BackupOptions(DumpFormat.PLAIN, compression), (public,))
    assert stored.startswith(encryption.HEADER_LINE)
    assert b"marker-0f3c2a" not in stored
    keys = encryption.Keys((public,), (identity,))
    sealing = _sealing(compression, (public,))
    assert b"".join(pipeline.content(_chunks(stored), sealing, keys)) == DATA
    found = _inspect(stored, sealing, keys)
    assert (found.problem, found.decoded_bytes, found.opened) == ("", len(DATA), True)


def test_without_an_identity_the_header_is_checked_and_nothing_decrypted() -> None:
    public, _ = _key()
    stored = _seal(DATA, BackupOptions(), (public,))
    sealing = _sealing(Compression.NONE, (public,))
    found = _inspect(stored, sealing)
    assert (found.problem, found.opened) == ("", False)
    for bad, problem in [
        (b"not age at all\n" + stored, "first line is not age-encryption.org/v1"),
        (stored.replace(b"-> X25519", b"-> X25519 \x01", 1), "malformed recipient stanza"),
        (stored[:40], "ends before it does"),
    ]:
        assert problem in _inspect(bad, sealing).problem
    with pytest.raises(NoIdentity, match=r"no identity for recipients age:[0-9a-f]{16}"):
        list(pipeline.content(_chunks(stored), sealing))


def test_a_flipped_byte_is_damage_and_a_wrong_key_is_no_identity() -> None:
    public, identity = _key()
    other_public, other = _key()
    stored = bytearray(_seal(DATA, BackupOptions(), (public,)))
    keys = encryption.Keys((public,), (identity,))
    sealing = _sealing(Compression.NONE, (public,))
    stored[len(stored) // 2] ^= 0x01
    found = _inspect(bytes(stored), sealing, keys)
    assert "age data is damaged" in found.problem
    with pytest.raises(Corrupt, match="age data is damaged"):
        list(pipeline.content(_chunks(bytes(stored)), sealing, keys))
    stored[len(stored) // 2] ^= 0x01
    # The manifest says `public`; only `other` is configured: refused before reading.
    wrong = encryption.Keys((other_public,), (other,))
    with pytest.raises(NoIdentity):
        list(pipeline.content(_chunks(bytes(stored)), sealing, wrong))
    # A manifest that named `other` (it cannot, signed) would meet pyrage's own refusal.
    lying = _sealing(Compression.NONE, (other_public,))
    with pytest.raises(NoIdentity):
        list(pipeline.content(_chunks(bytes(stored)), lying, wrong))


def test_truncated_ciphertext_is_damage() -> None:
    public, identity = _key()
    stored = _seal(DATA, BackupOptions(), (public,))
    keys = encryption.Keys((public,), (identity,))
    found = _inspect(stored[:-100], _sealing(Compression.NONE, (public,)), keys)
    assert "age data is damaged" in found.problem


def test_a_consumer_that_stops_early_leaves_no_thread_behind() -> None:
    public, identity = _key()
    stored = _seal(DATA, BackupOptions(), (public,))
    keys = encryption.Keys((public,), (identity,))
    before = threading.active_count()
    reader = pipeline.content(_chunks(stored), _sealing(Compression.NONE, (public,)), keys)
    next(reader)
    reader.close()
    assert threading.active_count() == before


def test_several_recipients_each_open_it() -> None:
    keys = [_key() for _ in range(3)]
    recipients = tuple(public for public, _ in keys)
    stored = _seal(DATA[:1000], BackupOptions(), recipients)
    for _, identity in keys:
        opened = encryption.Keys((), (identity,))
        sealing = _sealing(Compression.NONE, recipients)
        assert b"".join(pipeline.content(_chunks(stored), sealing, opened)) == DATA[:1000]


def test_identity_files_and_recipients_are_parsed_and_never_echoed() -> None:
    public, identity = _key()
    assert encryption.parse_recipient(f"  {public} ") == public
    secret = str(identity)
    with pytest.raises(ValueError, match="private key") as caught:
        encryption.parse_recipient(secret)
    assert secret not in str(caught.value)
    assert len(encryption.parse_identities(f"# created: today\n\n{secret}\n")) == 1
    with pytest.raises(ValueError, match="line 2 is not an age identity") as caught:
        encryption.parse_identities(f"{secret}\n{secret[:-3]}xyz\n")
    assert secret[:-3] not in str(caught.value)
    with pytest.raises(ValueError, match="holds no age identity"):
        encryption.parse_identities("# nothing\n")


@needs_age
def test_the_age_command_opens_what_pgkeep_wrote_and_the_reverse(tmp_path: Path) -> None:
    assert AGE is not None
    key_file, public = age_keygen(tmp_path)
    stored = _seal(DATA, BackupOptions(DumpFormat.PLAIN, Compression.ZSTD), (public,))
    opened = subprocess.run(
        [AGE, "-d", "-i", str(key_file)], input=stored, check=True, capture_output=True
    ).stdout
    codec = decompressor(Compression.ZSTD)
    assert codec.process(opened) + codec.finish() == DATA
    # And a file the age command encrypted opens in pgkeep's chain.
    theirs = subprocess.run([AGE, "-r", public], input=DATA, check=True, capture_output=True).stdout
    keys = encryption.Keys((), encryption.parse_identities(key_file.read_text()))
    sealing = _sealing(Compression.NONE, (public,))
    assert b"".join(pipeline.content(_chunks(theirs), sealing, keys)) == DATA


def test_fingerprints_are_stable_short_and_not_the_key() -> None:
    public, _ = _key()
    fp = encryption.fingerprint(public)
    assert fp == encryption.fingerprint(f" {public}\n")
    assert fp.startswith("age:")
    assert len(fp) == 20
    assert public[4:20] not in fp
    assert encryption.fingerprint(_key()[0]) != fp


def test_an_upper_case_recipient_is_the_same_key_and_name() -> None:
    """Bech32 ignores case: `age -r AGE1…` encrypts to the same key as `age1…`."""
    public, identity = _key()
    assert encryption.parse_recipient(public.upper()) == public
    assert encryption.fingerprint(public.upper()) == encryption.fingerprint(public)
    with pytest.raises(ValueError, match="not an age recipient"):
        encryption.parse_recipient(public[:10] + public[10:].upper())  # mixed case is not bech32
    with pytest.raises(ValueError, match="private key"):
        encryption.parse_recipient(str(identity).lower())


def test_backups_named_by_an_upper_case_fingerprint_still_open() -> None:
    """Manifests written before fingerprints were of the lower-case form."""
    public, identity = _key()
    keys = encryption.Keys((), (identity,))
    old = "age:" + hashlib.sha256(public.upper().encode()).hexdigest()[:16]
    assert keys.can_open((old,))
    assert keys.can_open((encryption.fingerprint(public),))
    assert not keys.can_open(("age:" + hashlib.sha256(b"other").hexdigest()[:16],))
