"""A backup's verification state in the list never overstates: none, checksum, restored
(rows proven) and failed (which check, why, whose bytes), from real verifies of real
dumps, one of them corrupted on disk; and the list's kind, pin and duration."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from pgkeep.config import load_settings
from pgkeep.http.app import create_app
from pgkeep.throwaway.cluster import ThrowawayCluster
from tests.conftest import SECRET

pytestmark = pytest.mark.anyio


async def _item(api: httpx.AsyncClient, auth: dict[str, str], name: str) -> Any:
    listed = (await api.get("/api/backup/list", headers=auth)).json()["backups"]
    return next(b for b in listed if b["filename"] == name)


async def test_verification_states_from_real_verifies(
    api: httpx.AsyncClient, auth: dict[str, str], backup_dir: Path
) -> None:
    name = (await api.post("/api/backup/create", headers=auth)).json()["filename"]
    item = await _item(api, auth, name)
    assert item["verification"] == {
        "state": "none",
        "at": None,
        "rowsProven": None,
        "check": None,
        "details": None,
        "source": None,
        "rehearsals": [],
    }
    assert item["verdict"] is None
    assert (item["kind"], item["pinned"]) == ("database", False)
    assert isinstance(item["durationMs"], int)

    checked = (await api.post(f"/api/backup/{name}/verify", headers=auth, json={})).json()
    item = await _item(api, auth, name)
    assert item["verification"]["state"] == "checksum"
    assert item["verification"]["at"] == checked["verifiedAt"]
    assert item["verification"]["rowsProven"] is None
    assert item["verified"] is True  # as before: says nothing of how

    restored = await api.post(f"/api/backup/{name}/verify", headers=auth, json={"restore": True})
    assert restored.json()["verified"] is True, restored.text
    v = (await _item(api, auth, name))["verification"]
    assert (v["state"], v["check"], v["source"]) == ("restored", "restore", "primary")
    assert restored.json()["verdict"] == "restored"
    assert v["rowsProven"] > 0
    assert f"{v['rowsProven']} rows" in v["details"]
    [row] = (await api.get("/api/backup/targets", headers=auth)).json()["targets"]
    assert row["lastTestRestore"] == {
        "filename": name,
        "at": v["at"],
        "ok": True,
        "verdict": "restored",
    }

    assert (await api.post(f"/api/backup/{name}/pin", headers=auth)).status_code == 200
    assert (await _item(api, auth, name))["pinned"] is True

    other = (await api.post("/api/backup/create", headers=auth)).json()["filename"]
    stored = backup_dir / other
    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one byte flipped, the size unchanged
    stored.write_bytes(bytes(data))
    failed = (await api.post(f"/api/backup/{other}/verify", headers=auth, json={})).json()
    assert failed["verified"] is False
    v = (await _item(api, auth, other))["verification"]
    assert (v["state"], v["check"], v["source"]) == ("failed", "sha256", "primary")
    assert v["details"] == next(c["details"] for c in failed["checks"] if c["name"] == "sha256")


async def test_a_globals_backup_says_so(
    tmp_path: Path, cluster: ThrowawayCluster, auth: dict[str, str]
) -> None:
    """Globals (roles, tablespaces) are restored by hand: the list says which backups are."""
    path = tmp_path / "pgkeep.toml"
    path.write_text(
        f'jwt_secret = "{SECRET}"\nbackup_dir = "{tmp_path / "store"}"\n'
        f'pg_bin_dir = "{cluster.bin_dir}"\n[servers.main]\nurl = "{cluster.url()}"\n'
        'include = ["none_such_*"]\nglobals = true\n'
    )
    app = create_app(load_settings(config=path))
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://t") as api,
    ):
        made = await api.post("/api/backup/create?target=main", headers=auth)
        assert made.status_code == 200, made.text
        listed = (await api.get("/api/backup/list?target=main", headers=auth)).json()
    assert [b["kind"] for b in listed["backups"]] == ["globals"]
