"""Encrypted backups end to end on a real PostgreSQL: restorable with nothing but `age`,
`zstd`/`gzip` and `psql`/`pg_restore`; a write-only server; key rotation; damage."""

from __future__ import annotations

import gzip
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import anyio
import httpx
import psycopg
import pyrage
import pytest
import zstandard

from pgkeep import wiring
from pgkeep.cli import main
from pgkeep.config import Settings
from pgkeep.core import encryption
from pgkeep.core.models import BackupOptions, Compression, DumpFormat
from pgkeep.core.service import BackupService
from pgkeep.errors import Corrupt, InsufficientStorage, NoIdentity
from pgkeep.http.app import create_app
from pgkeep.throwaway.cluster import ThrowawayCluster
from tests.conftest import ACTOR, SECRET
from tests.roundtrip import FIXTURES, fingerprint, load

AGE = shutil.which("age")
needs_age = pytest.mark.skipif(AGE is None, reason="Debian's age is not installed (make test does)")
COMBOS = [
    BackupOptions(DumpFormat.PLAIN, Compression.NONE),
    BackupOptions(DumpFormat.PLAIN, Compression.GZIP),
    BackupOptions(DumpFormat.PLAIN, Compression.ZSTD),
    BackupOptions(DumpFormat.CUSTOM, Compression.GZIP),
]
PARTS = ("schema", "rows", "sequences", "large_objects", "counts")


class Key:
    """An age key pair; the private key in a 0600 file, as an operator keeps it."""

    def __init__(self, directory: Path, name: str) -> None:
        identity = pyrage.x25519.Identity.generate()
        self.public = str(identity.to_public())
        self.file = directory / f"{name}.txt"
        self.file.write_text(f"# {name}\n{identity}\n")
        self.file.chmod(0o600)
        self.secret = str(identity)
        self.fingerprint = encryption.fingerprint(self.public)


@pytest.fixture(scope="module")
def hostile(cluster: ThrowawayCluster) -> Iterator[tuple[str, dict[str, object]]]:
    """The hostile fixture database (large objects, odd names, sequences) and its fingerprint."""
    cluster.create_database("enc_source")
    url = cluster.url("enc_source")
    load(url, FIXTURES / "hostile.sql", psql=cluster.bin_dir / "psql")
    yield url, fingerprint(url, cluster.bin_dir / "pg_dump")
    cluster.execute('DROP DATABASE IF EXISTS "enc_source" WITH (FORCE)')


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Key, Key]:
    return Key(tmp_path, "one"), Key(tmp_path, "two")


def _service(make_settings: Callable[..., Settings], **settings: object) -> BackupService:
    return wiring.build(make_settings(**settings)).service()


def _restore_by_hand(
    stored: Path, key: Key, options: BackupOptions, cluster: ThrowawayCluster, into: str
) -> None:
    """What the runbook says: age -d, then zstd -d / gzip -d, then psql or pg_restore."""
    assert AGE is not None
    plain = subprocess.run(
        [AGE, "-d", "-i", str(key.file), str(stored)], check=True, capture_output=True
    ).stdout
    cluster.create_database(into)
    url = cluster.url(into)
    if options.format is DumpFormat.CUSTOM:
        archive = stored.with_suffix(".opened")
        archive.write_bytes(plain)
        subprocess.run(
            [str(cluster.bin_dir / "pg_restore"), "--exit-on-error", "-d", url, str(archive)],
            check=True,
            capture_output=True,
        )
        return
    if options.compression is Compression.GZIP:
        plain = gzip.decompress(plain)
    elif options.compression is Compression.ZSTD:
        plain = zstandard.ZstdDecompressor().decompressobj().decompress(plain)
    subprocess.run(
        [str(cluster.bin_dir / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url],
        input=plain,
        check=True,
        capture_output=True,
    )


@needs_age
@pytest.mark.parametrize("options", COMBOS, ids=lambda o: f"{o.format}-{o.compression}")
def test_encrypted_backups_restore_with_standard_tools_and_with_pgkeep(
    options: BackupOptions,
    hostile: tuple[str, dict[str, object]],
    make_settings: Callable[..., Settings],
    keys: tuple[Key, Key],
    cluster: ThrowawayCluster,
    backup_dir: Path,
    tmp_path: Path,
) -> None:
    url, expected = hostile
    key, _ = keys
    service = _service(
        make_settings,
        database_url=url,
        age_recipients=key.public,
        age_identity_file=key.file,
        tmp_dir=tmp_path / "staging",
    )
    (tmp_path / "staging").mkdir()
    backup = service.creating.create(options, ACTOR)
    assert backup.name.endswith(".age")
    assert backup.recipients == (key.fingerprint,)
    stored = (backup_dir / backup.name).read_bytes()
    assert stored.startswith(b"age-encryption.org/v1\n")
    for marker in (b"PostgreSQL database dump", b"PGDMP", "Ödd Schéma".encode(), b"touched_by"):
        assert marker not in stored
    manifest = (backup_dir / (backup.name + ".json")).read_text()
    assert key.public not in manifest  # the fingerprint only
    assert key.fingerprint in manifest

    verification = service.proving.verify(backup.name, restore=True, actor=ACTOR)
    assert verification.verified, verification.checks
    assert "decrypted" in verification.checks[2].details

    by_hand = f"by_hand_{options.format}_{options.compression}"
    by_pgkeep = f"by_pgkeep_{options.format}_{options.compression}"
    try:
        _restore_by_hand(backup_dir / backup.name, key, options, cluster, by_hand)
        service.proving.restore(backup.name, by_pgkeep, actor=ACTOR)
        for restored in (by_hand, by_pgkeep):
            found = fingerprint(cluster.url(restored), cluster.bin_dir / "pg_dump")
            for part in PARTS:
                assert found[part] == expected[part], (restored, part)
    finally:
        for name in (by_hand, by_pgkeep):
            cluster.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    assert list((tmp_path / "staging").iterdir()) == []  # staged archives always removed


def test_a_write_only_server_creates_lists_and_checks_but_never_restores(
    make_settings: Callable[..., Settings],
    keys: tuple[Key, Key],
    auth: dict[str, str],
    backup_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    key, _ = keys
    settings = make_settings(age_recipients=key.public, default_compression="zstd")
    app = create_app(settings)
    service = app.state.runtime.service()
    backup = service.creating.create(None, ACTOR)
    assert backup.name.endswith(".sql.zst.age")

    async def calls() -> dict[str, httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as api:
            return {
                "list": await api.get("/api/backup/list", headers=auth),
                "download": await api.get(f"/api/backup/download/{backup.name}", headers=auth),
                "verify": await api.post(f"/api/backup/{backup.name}/verify", headers=auth),
                "test-restore": await api.post(
                    f"/api/backup/{backup.name}/verify", headers=auth, json={"restore": True}
                ),
                "restore": await api.post(
                    f"/api/backup/{backup.name}/restore",
                    headers=auth,
                    json={"targetDatabase": "never_made"},
                ),
                "restore-async": await api.post(
                    f"/api/backup/{backup.name}/restore?async=true",
                    headers=auth,
                    json={"targetDatabase": "never_made"},
                ),
            }

    got = anyio.run(calls)
    [item] = got["list"].json()["backups"]
    assert (item["encrypted"], item["recipients"]) == (True, [key.fingerprint])
    assert got["download"].headers["content-type"] == "application/octet-stream"
    assert got["download"].content.startswith(b"age-encryption.org/v1\n")
    verify = got["verify"].json()
    assert verify["verified"] is True, verify
    assert "not decrypted (no identity for recipients" in verify["checks"][2]["details"]
    for call in ("test-restore", "restore", "restore-async"):
        assert got[call].status_code == 422, (call, got[call].text)
        assert got[call].json()["error"] == f"no identity for recipients {key.fingerprint}"
    assert "damaged" not in got["restore"].text

    for name, value in {
        "PGKEEP_DATABASE_URL": str(settings.require_database_url()),
        "PGKEEP_JWT_SECRET": SECRET,
        "PGKEEP_BACKUP_DIR": str(backup_dir),
        "PGKEEP_PG_BIN_DIR": str(settings.pg_bin_dir),
        "PGKEEP_AGE_RECIPIENTS": key.public,
    }.items():
        monkeypatch.setenv(name, value)
    code = main(["backup", "restore", backup.name, "--target-database", "never_made"])
    err = capsys.readouterr().err
    assert code == 2
    assert f"no identity for recipients {key.fingerprint}" in err
    assert main(["backup", "list"]) == 0
    assert key.fingerprint in capsys.readouterr().out


def test_rotation_keeps_old_backups_open_and_says_who_each_is_for(
    make_settings: Callable[..., Settings],
    keys: tuple[Key, Key],
    cluster: ThrowawayCluster,
    tmp_path: Path,
) -> None:
    one, two = keys
    old = _service(make_settings, age_recipients=one.public, age_identity_file=one.file)
    first = old.creating.create(None, ACTOR)
    both = tmp_path / "both.txt"
    both.write_text(one.file.read_text() + two.file.read_text())
    rotated = _service(make_settings, age_recipients=two.public, age_identity_file=both)
    second = rotated.creating.create(None, ACTOR)
    listed = {b.name: b.recipients for b in rotated.catalog.list()}
    assert listed == {first.name: (one.fingerprint,), second.name: (two.fingerprint,)}
    try:
        for backup in (first, second):
            rotated.proving.restore(backup.name, "rot_" + backup.name[-10:-8], actor=ACTOR)
    finally:
        for backup in (first, second):
            cluster.execute(f'DROP DATABASE IF EXISTS "rot_{backup.name[-10:-8]}" WITH (FORCE)')
    only_new = _service(make_settings, age_recipients=two.public, age_identity_file=two.file)
    with pytest.raises(NoIdentity, match=one.fingerprint):
        only_new.proving.restore(first.name, "never_made", actor=ACTOR)
    assert only_new.proving.verify(second.name, restore=True, actor=ACTOR).verified


@pytest.mark.parametrize("where", ["file", "inline"])
def test_a_backup_to_an_upper_case_recipient_opens_in_pgkeep(
    where: str,
    make_settings: Callable[..., Settings],
    keys: tuple[Key, Key],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """`AGE1…` in a recipients file: `age -d` opened such backups, pgkeep said "no identity"
    (and inline, the key was taken for a file name)."""
    key, _ = keys
    recipients = tmp_path / "recipients.txt"
    recipients.write_text(f"{key.public.upper()}\n")
    given = str(recipients) if where == "file" else key.public.upper()
    monkeypatch.setenv("PGKEEP_AGE_RECIPIENTS", given)
    service = _service(make_settings, age_identity_file=key.file)
    backup = service.creating.create(None, ACTOR)
    verification = service.proving.verify(backup.name, restore=True, actor=ACTOR)
    assert verification.verified, verification.checks
    assert backup.recipients == (key.fingerprint,)  # as a lower-case key's always were


def test_damaged_ciphertext_fails_verify_and_restore_touches_nothing(
    make_settings: Callable[..., Settings],
    keys: tuple[Key, Key],
    cluster: ThrowawayCluster,
    backup_dir: Path,
) -> None:
    key, _ = keys
    service = _service(make_settings, age_recipients=key.public, age_identity_file=key.file)
    backup = service.creating.create(BackupOptions(DumpFormat.CUSTOM, Compression.NONE), ACTOR)
    path = backup_dir / backup.name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x40
    path.write_bytes(bytes(data))
    verification = service.proving.verify(backup.name, restore=True, actor=ACTOR)
    failed = {c.name: c.details for c in verification.checks if not c.ok}
    assert set(failed) == {"sha256", "readable", "restore"}
    assert "age data is damaged" in failed["readable"]
    with pytest.raises(Corrupt, match="failed its integrity check; nothing was restored"):
        service.proving.restore(backup.name, "from_damaged", actor=ACTOR)
    with psycopg.connect(cluster.url(), autocommit=True) as conn:
        left = conn.execute("SELECT datname FROM pg_database WHERE datname LIKE '%damaged%'")
        assert left.fetchall() == []


def test_staging_refuses_an_archive_that_would_not_fit(
    make_settings: Callable[..., Settings], keys: tuple[Key, Key], tmp_path: Path
) -> None:
    key, _ = keys
    service = _service(make_settings, age_recipients=key.public, age_identity_file=key.file)
    restorer = service.proving.restorers.target
    opened: list[bool] = []

    def chunks() -> Iterator[bytes]:
        opened.append(True)
        yield b"PGDMP"

    with pytest.raises(InsufficientStorage, match="to stage the archive"):
        restorer.check_archive(18, chunks(), size_hint=10**18)
    assert opened == []  # refused before anything was decrypted or written
