"""Someone who can write to a store or a copy store, but holds no signing key: nothing they
move, plant or flip is listed as another target's, restored, or served.

Seen on the previous main: staging's backup copied into prod's folder was listed, verified
and restored over prod's database (manifests named the database, not the target); a copy
flipped between good and hostile bytes after its check was restored unchecked; a file
planted in the copy store alone was downloaded with no check at all.
"""

from __future__ import annotations

import base64
import hashlib
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pgkeep import wiring
from pgkeep.config import Settings, load_settings
from pgkeep.core.models import StoredObject
from pgkeep.errors import Corrupt, NotFound
from pgkeep.http.app import create_app
from pgkeep.storage.local import LocalReadHandle, LocalStorage
from pgkeep.throwaway.cluster import ThrowawayCluster
from tests.conftest import ACTOR, SECRET

pytestmark = pytest.mark.anyio


def _two_targets(tmp_path: Path, cluster: ThrowawayCluster, database: str) -> Settings:
    """staging and prod: two targets of databases with the same name (here: the same one)."""
    path = tmp_path / "pgkeep.toml"
    path.write_text(
        f"""
jwt_secret = "{SECRET}"
backup_dir = "{tmp_path / "store"}"
pg_bin_dir = "{cluster.bin_dir}"

[targets.staging]
database_url = "{database}"

[targets.prod]
database_url = "{database}"
"""
    )
    return load_settings(config=path)


def test_a_backup_moved_into_another_targets_folder_is_not_that_targets(
    tmp_path: Path, cluster: ThrowawayCluster, database: str
) -> None:
    settings = _two_targets(tmp_path, cluster, database)
    runtime = wiring.build(settings)
    staging, prod = runtime.service("staging"), runtime.service("prod")
    backup = staging.creating.create(None, ACTOR)
    store = tmp_path / "store"
    for name in (backup.name, backup.name + ".json"):
        shutil.copy2(store / "staging" / name, store / "prod" / name)
    assert [b.name for b in staging.catalog.list()] == [backup.name]
    assert prod.catalog.list() == []
    with pytest.raises(NotFound) as verify:
        prod.proving.verify(backup.name, restore=True, actor=ACTOR)
    with pytest.raises(NotFound) as restore:
        prod.proving.restore(backup.name, "from_staging", actor=ACTOR)
    for refused in (verify, restore):
        assert "made for another target or database" in refused.value.details
    prod.creating.create(None, ACTOR)  # retention there never deletes the stranger either
    assert (store / "prod" / backup.name).exists()


class _FlippingStorage(LocalStorage):
    """A copy store whose writer replaces the copy with hostile bytes of the same size right
    after it was looked up (each opening of the backup after the first)."""

    def __init__(self, directory: Path, hostile: bytes) -> None:
        super().__init__(directory)
        self.hostile = hostile
        self.opened = 0

    def open_read(self, name: str, listed: StoredObject | None = None) -> LocalReadHandle:
        if name.startswith("backup-") and not name.endswith(".json"):
            self.opened += 1
            if self.opened == 2:
                flipped = self.directory / "flip.tmp"
                flipped.write_bytes(self.hostile)
                flipped.chmod(0o600)
                flipped.replace(self.directory / name)
        return super().open_read(name, listed)


def _copied(manifest: Path) -> None:
    """Wait for the copier (it copies each new backup on its own thread)."""
    deadline = time.monotonic() + 30
    while not manifest.exists() or not manifest.with_suffix("").exists():
        assert time.monotonic() < deadline, "not copied"
        time.sleep(0.05)


@pytest.fixture
def marker() -> Iterator[Path]:
    path = (
        Path("/tmp")
        / f"pgkeep-flipped-{hashlib.sha256(str(id(object())).encode()).hexdigest()[:8]}"
    )
    yield path
    path.unlink(missing_ok=True)


def test_a_copy_flipped_after_its_check_is_never_loaded(
    tmp_path: Path, cluster: ThrowawayCluster, database: str, marker: Path
) -> None:
    """The primary is damaged; the copy is sound when looked up, then flipped: the restore
    refuses the copy unread instead of loading what it did not check."""
    settings = load_settings(
        database_url=database,
        jwt_secret=SECRET,
        backup_dir=tmp_path / "primary",
        pg_bin_dir=cluster.bin_dir,
        copy_to=f"file://{tmp_path / 'copies'}",
    )
    service = wiring.build(settings).service()
    assert service.copier is not None
    backup = service.creating.create(None, ACTOR)
    _, copies = service.copier.copies[0]
    _copied(tmp_path / "copies" / (backup.name + ".json"))
    primary = tmp_path / "primary" / backup.name
    primary.write_bytes(b"x" * primary.stat().st_size)  # damaged in the primary store
    hostile = f"\\! touch {marker}\nCOPY (SELECT 1) TO PROGRAM 'touch {marker}';\n".encode()
    hostile += b"-" * (backup.size_bytes - len(hostile) - 1) + b"\n"
    copies.storage = _FlippingStorage(tmp_path / "copies", hostile)
    copies.manifests._storage = copies.storage
    with pytest.raises(Corrupt, match="failed its integrity check") as refused:
        service.proving.restore(backup.name, "from_flipped", actor=ACTOR)
    assert "changed since it was checked" in refused.value.details
    assert not marker.exists()


async def test_downloads_from_a_copy_need_its_signed_manifest_and_its_bytes(
    tmp_path: Path, cluster: ThrowawayCluster, database: str, auth: dict[str, str]
) -> None:
    settings = load_settings(
        database_url=database,
        jwt_secret=SECRET,
        backup_dir=tmp_path / "primary",
        pg_bin_dir=cluster.bin_dir,
        copy_to=f"file://{tmp_path / 'copies'}",
    )
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://t") as api,
    ):
        runtime = app.state.runtime
        service = runtime.service()
        backup = service.creating.create(None, ACTOR)
        _copied(tmp_path / "copies" / (backup.name + ".json"))
        good = (tmp_path / "primary" / backup.name).read_bytes()
        digest = "sha-256=:" + base64.b64encode(hashlib.sha256(good).digest()).decode() + ":"
        primary = await api.get(f"/api/backup/download/{backup.name}", headers=auth)
        assert primary.headers["repr-digest"] == digest
        (tmp_path / "primary" / backup.name).unlink()  # lost from the primary
        (tmp_path / "primary" / (backup.name + ".json")).unlink()
        served = await api.get(f"/api/backup/download/{backup.name}", headers=auth)
        assert (served.status_code, served.content) == (200, good)
        assert served.headers["x-pgkeep-source"].startswith("copy:")
        assert served.headers["repr-digest"] == digest
        # Bytes changed in the copy store (same size): the last chunk is never sent.
        copy = tmp_path / "copies" / backup.name
        copy.write_bytes(b"-" * len(good))
        try:
            damaged = await api.get(f"/api/backup/download/{backup.name}", headers=auth)
        except httpx.HTTPError:
            pass  # the connection was aborted
        else:
            assert len(damaged.content) < len(good)
        # A file planted in the copy store alone (no signed manifest): never served.
        planted = "backup-2020-01-01T00-00-00.sql"
        (tmp_path / "copies" / planted).write_bytes(b"-- planted\n")
        missing = await api.get(f"/api/backup/download/{planted}", headers=auth)
        assert missing.status_code == 404


class _DeletingStorage(LocalStorage):
    """A store whose backup (and manifest) is deleted right after the one read opened it
    (the second opening after arming: the first is the look-up)."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        self.armed = 0

    def open_read(self, name: str, listed: StoredObject | None = None) -> LocalReadHandle:
        handle = super().open_read(name, listed)
        if self.armed and name.startswith("backup-") and not name.endswith(".json"):
            self.armed += 1
            if self.armed == 3:
                (self.directory / name).unlink()
                (self.directory / (name + ".json")).unlink()
        return handle


def test_a_verify_of_a_backup_deleted_while_it_runs_is_not_verified(
    tmp_path: Path, cluster: ThrowawayCluster, database: str
) -> None:
    store = _DeletingStorage(tmp_path / "backups")
    service = wiring.build(
        load_settings(
            database_url=database,
            jwt_secret=SECRET,
            backup_dir=tmp_path / "backups",
            pg_bin_dir=cluster.bin_dir,
        ),
        storage=store,
    ).service()
    backup = service.creating.create(None, ACTOR)
    store.armed = 1
    with pytest.raises(NotFound, match="was deleted while it was being verified"):
        service.proving.verify(backup.name, restore=False, actor=ACTOR)
    assert not (tmp_path / "backups" / (backup.name + ".json")).exists()  # nothing recorded
