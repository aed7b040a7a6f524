"""Someone with write access to the backup store plants files: none of them ever runs.

Seen on the previous main: a planted `.sql` holding `\\! id` ran as the service's user on
verify with restore; `COPY … TO PROGRAM` ran on the database server.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import stat
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psycopg
import pytest

from pgkeep.config import Settings
from pgkeep.core import manifests, naming
from pgkeep.core.models import StoredObject
from pgkeep.core.signing import Signer
from pgkeep.errors import ConfigError, Corrupt
from pgkeep.http.app import create_app
from pgkeep.storage.local import LocalReadHandle, LocalStorage
from pgkeep.throwaway.cluster import ThrowawayCluster
from tests.conftest import ACTOR, core_service, plant_backup

pytestmark = pytest.mark.anyio
NAME = "backup-2024-12-09T10-30-45.sql"


@pytest.fixture
def marker() -> Iterator[Path]:
    """A file that only running a planted command would create (world-writable dir: the
    database server's user can write there too)."""
    path = Path("/tmp") / f"pgkeep-pwned-{secrets.token_hex(6)}"
    yield path
    path.unlink(missing_ok=True)


def _evil_sql(marker: Path) -> bytes:
    return (
        "--\n-- PostgreSQL database dump\n--\n"
        f"\\! touch {marker}\n"
        f"COPY (SELECT 1) TO PROGRAM 'touch {marker}';\n"
        "CREATE TABLE planted (i int);\n"
    ).encode()


def _databases(cluster: ThrowawayCluster) -> set[str]:
    with psycopg.connect(cluster.url()) as conn:
        return {str(r[0]) for r in conn.execute("SELECT datname FROM pg_database").fetchall()}


async def _attempt(
    api: httpx.AsyncClient, auth: dict[str, str], name: str
) -> tuple[httpx.Response, httpx.Response]:
    verify = await api.post(f"/api/backup/{name}/verify", headers=auth, json={"restore": True})
    restore = await api.post(
        f"/api/backup/{name}/restore", headers=auth, json={"targetDatabase": "from_planted"}
    )
    return verify, restore


def _manifest_of(backup_dir: Path, name: str) -> dict[str, object]:
    data: dict[str, object] = json.loads((backup_dir / (name + ".json")).read_text())
    return data


@pytest.mark.parametrize(
    "case", ["no manifest", "unsigned", "downgraded", "forged", "copied", "edited"]
)
async def test_planted_dump_never_runs(
    api: httpx.AsyncClient,
    auth: dict[str, str],
    settings: Settings,
    backup_dir: Path,
    cluster: ThrowawayCluster,
    marker: Path,
    case: str,
) -> None:
    evil = _evil_sql(marker)
    real = (await api.post("/api/backup/create", headers=auth)).json()["filename"]
    (backup_dir / NAME).write_bytes(evil)
    manifest = _manifest_of(backup_dir, real)
    planted = {**manifest, "filename": NAME, "sha256": hashlib.sha256(evil).hexdigest()}
    planted["sizeBytes"] = len(evil)
    if case == "unsigned":  # as 0.1.0 wrote them, before signing
        planted = {k: v for k, v in planted.items() if k in manifests.LEGACY_KEYS}
        planted["schemaVersion"] = 1
    elif case == "downgraded":  # a signed manifest edited to pass for one from before signing
        planted |= {"schemaVersion": 1}
    elif case == "forged":
        planted["signature"] = {"keyId": manifest["signature"]["keyId"], "hmac": "0" * 64}  # type: ignore[index]
    elif case == "copied":
        planted = manifest  # a good manifest, of another backup
    elif case == "edited":
        planted = {**manifest, "filename": NAME, "sha256": planted["sha256"]}  # signature kept
    if case != "no manifest":
        (backup_dir / (NAME + ".json")).write_text(json.dumps(planted))
    before = _databases(cluster)
    verify, restore = await _attempt(api, auth, NAME)
    assert verify.status_code == 200, verify.text
    checks = {c["name"]: c for c in verify.json()["checks"]}
    assert verify.json()["verified"] is False
    assert checks["manifest"]["ok"] is False
    expected = {
        "no manifest": "no manifest",
        "unsigned": "manifest unsigned",
        "downgraded": "manifest tampered with",
        "forged": "manifest signature does not match",
        "copied": "manifest describes another backup",
        "edited": "manifest signature does not match",
    }[case]
    assert checks["manifest"]["details"].startswith(expected)
    assert checks["restore"] == {
        "name": "restore",
        "ok": False,
        "details": "not test-restored: the checks above failed",
    }
    assert restore.status_code == 422, restore.text
    assert "is never restored" in restore.json()["error"]
    assert not marker.exists()
    assert _databases(cluster) == before
    # verify never rewrote a manifest it does not trust, nor wrote one where there was none
    if case == "no manifest":
        assert not (backup_dir / (NAME + ".json")).exists()
    else:
        assert json.loads((backup_dir / (NAME + ".json")).read_text()) == planted


async def test_signed_plain_dump_with_meta_commands_is_stopped_by_restrict(
    make_settings: Callable[..., Settings],
    auth: dict[str, str],
    cluster: ThrowawayCluster,
    marker: Path,
) -> None:
    """A hostile *source* database can put text in a dump; psql's \\restrict keeps any
    meta-command in it from running, and a dump that does not open with its key is refused."""
    settings = make_settings()
    at = datetime(2024, 12, 9, 10, 30, 45, tzinfo=UTC)
    with_key = plant_backup(settings, at, b"--\n\\restrict K1\n\\! touch " + str(marker).encode())
    _set_restrict_key(settings, with_key, "K1")
    without = plant_backup(settings, at.replace(second=46), _evil_sql(marker))
    _set_restrict_key(settings, without, "K2")
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as api:
        for name, error in ((with_key, "psql failed"), (without, "does not open with")):
            restore = await api.post(
                f"/api/backup/{name}/restore", headers=auth, json={"targetDatabase": "nope"}
            )
            assert restore.status_code in (422, 500), restore.text
            assert error in restore.text
    assert not marker.exists()


def _set_restrict_key(settings: Settings, name: str, key: str) -> None:
    """Rewrite a planted manifest with a restrict key, signed as the service would."""
    current, old = settings.signing_keys()
    signer = Signer(current, old)
    path = settings.backup_dir / (name + ".json")
    read = manifests.from_json(path.read_bytes(), name, signer)
    assert read.manifest is not None
    path.write_bytes(manifests.to_json(replace(read.manifest, restrict_key=key), signer))


async def test_hard_link_to_a_file_outside_is_never_served(
    api: httpx.AsyncClient, auth: dict[str, str], backup_dir: Path, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("outside the backup directory\n")
    backup_dir.mkdir(exist_ok=True, mode=0o700)
    (backup_dir / NAME).hardlink_to(secret)
    for method, path in (
        ("GET", f"/api/backup/download/{NAME}"),
        ("POST", f"/api/backup/{NAME}/verify"),
        ("POST", f"/api/backup/{NAME}/pin"),
    ):
        response = await api.request(method, path, headers=auth)
        assert response.status_code == 404, (method, response.text)
        assert "hard links" in response.json()["details"]
    listed = (await api.get("/api/backup/list", headers=auth)).json()
    assert NAME not in [b["filename"] for b in listed["backups"]]
    assert secret.read_text() == "outside the backup directory\n"


def test_world_writable_backup_directory_is_refused(
    make_settings: Callable[..., Settings], backup_dir: Path
) -> None:
    backup_dir.mkdir()
    backup_dir.chmod(0o777)
    with pytest.raises(ConfigError, match="world-writable"):
        create_app(make_settings())
    backup_dir.chmod(0o700)
    assert stat.S_IMODE(backup_dir.stat().st_mode) == 0o700
    create_app(make_settings())


class _SwappingStorage(LocalStorage):
    """The real local store, and an attacker with write access to its directory who renames
    a crafted file into a backup's place just before its `swap_at`-th opening (right after
    the checksum pass has read the genuine bytes)."""

    def __init__(self, directory: Path, swap_at: int) -> None:
        super().__init__(directory)
        self.swap_at = swap_at
        self.opened = 0
        self.evil = b""

    def open_read(self, name: str, listed: StoredObject | None = None) -> LocalReadHandle:
        if self.evil and naming.is_backup_name(name):
            self.opened += 1
            if self.opened == self.swap_at:
                genuine = self.directory / name
                crafted = self.directory / "crafted.tmp"
                crafted.write_bytes(self.evil)
                before = genuine.stat()
                os.utime(crafted, ns=(before.st_atime_ns, before.st_mtime_ns))
                crafted.chmod(0o600)
                crafted.replace(genuine)
        return super().open_read(name, listed)


@pytest.mark.parametrize(("action", "swap_at"), [("restore", 2), ("verify", 2)])
def test_bytes_swapped_in_after_the_checksum_never_run(
    database: str,
    backup_dir: Path,
    cluster: ThrowawayCluster,
    marker: Path,
    action: str,
    swap_at: int,
) -> None:
    """Between the look-up that found a backup and the one read that checks and loads it, a
    file of the same size and mtime, opening with the manifest's own `\\restrict` key
    (manifests are readable in the store), is renamed into the backup's place: it is
    refused unread."""
    store = _SwappingStorage(backup_dir, swap_at)
    service = core_service(database, backup_dir, cluster.bin_dir, storage=store)
    backup = service.creating.create(None, ACTOR)
    assert backup.manifest is not None
    assert backup.manifest.restrict_key
    key = backup.manifest.restrict_key
    evil = f"\\restrict {key}\n\\unrestrict {key}\n\\! touch {marker}\n".encode() + _evil_sql(
        marker
    )
    store.evil = evil + b"-" * (backup.size_bytes - len(evil) - 1) + b"\n"
    assert len(store.evil) == backup.size_bytes
    before = _databases(cluster)
    if action == "restore":
        with pytest.raises(Corrupt, match="failed its integrity check") as refused:
            service.proving.restore(backup.name, "from_swapped", actor=ACTOR)
        assert "changed since it was checked" in refused.value.details
    else:
        result = service.proving.verify(backup.name, restore=True, actor=ACTOR)
        failed = {c.name: c.details for c in result.checks if not c.ok}
        assert not result.verified
        assert "changed since it was checked" in failed["sha256"], result.checks
        assert failed["restore"] == "not test-restored: the checks above failed"
    assert store.opened >= swap_at  # swapped after the look-up, before the read
    assert not marker.exists()
    assert _databases(cluster) == before
