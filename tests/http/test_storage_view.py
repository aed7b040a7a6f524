"""GET /api/backup/storage over real stores: bytes and backups per store and target, and a
backup deleted from a copy store by hand listed as missing there."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from pgkeep.config import load_settings
from pgkeep.http.app import create_app
from pgkeep.throwaway.cluster import ThrowawayCluster
from tests.conftest import SECRET

pytestmark = pytest.mark.anyio


def _until(condition: object, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "not reached"
        time.sleep(0.05)


async def test_a_backup_deleted_from_a_copy_store_by_hand_is_missing_there(
    tmp_path: Path, cluster: ThrowawayCluster, database: str, auth: dict[str, str]
) -> None:
    copies = tmp_path / "copies"
    settings = load_settings(
        database_url=database,
        jwt_secret=SECRET,
        backup_dir=tmp_path / "primary",
        pg_bin_dir=cluster.bin_dir,
        copy_to=f"file://{copies}",
    )
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://t") as api,
    ):
        names = []
        for _ in range(2):
            made = await api.post("/api/backup/create", headers=auth)
            assert made.status_code == 200, made.text
            names.append(made.json()["filename"])
        # A copy's manifest lands before its backup (published manifest first): wait for both.
        _until(
            lambda: all((copies / f"{n}.json").exists() and (copies / n).exists() for n in names)
        )
        whole = (await api.get("/api/backup/storage", headers=auth)).json()
        (copies / names[0]).unlink()  # by hand, behind pgkeep's back
        (copies / f"{names[0]}.json").unlink()
        after = (await api.get("/api/backup/storage", headers=auth)).json()
        [target] = app.state.runtime.services
    primary, copy = whole["stores"]
    sizes = sum((tmp_path / "primary" / n).stat().st_size for n in names)
    assert primary == {
        "name": "primary",
        "kind": "local",
        "role": "primary",
        "ok": True,
        "error": None,
        "bytes": sizes,
        "backups": 2,
        "targets": [{"target": target, "bytes": sizes, "backups": 2, "ok": True, "error": None}],
        "missing": [],
    }
    assert (copy["name"], copy["kind"], copy["role"]) == (f"file://{copies}", "local", "copy")
    assert (copy["ok"], copy["backups"], copy["missing"]) == (True, 2, [])
    primary, copy = after["stores"]
    assert primary["backups"] == 2
    assert copy["backups"] == 1
    assert copy["missing"] == [{"target": target, "filename": names[0]}]
