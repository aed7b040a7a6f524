"""Labels over the API, against a real cluster: set at create, merged with PATCH (RFC 7396),
kept in the signed manifest and carried to the copy store, filtered, audited."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from pgkeep.config import Settings, load_settings
from pgkeep.http.app import create_app
from pgkeep.throwaway.cluster import ThrowawayCluster
from tests.conftest import SECRET, plant_backup

pytestmark = pytest.mark.anyio


def _until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, "not reached"
        time.sleep(0.05)


async def test_labels_are_set_at_create_merged_filtered_signed_and_copied(
    tmp_path: Path, cluster: ThrowawayCluster, database: str, auth: dict[str, str]
) -> None:
    primary, copies = tmp_path / "primary", tmp_path / "copies"
    settings = load_settings(
        database_url=database,
        jwt_secret=SECRET,
        backup_dir=primary,
        pg_bin_dir=cluster.bin_dir,
        copy_to=f"file://{copies}",
    )
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://t") as api,
    ):
        created = await api.post(
            "/api/backup/create",
            headers=auth,
            json={"labels": {"reason": "pre-migration", "appVersion": "2.3.1"}},
        )
        assert created.status_code == 200, created.text
        name = created.json()["filename"]
        assert created.json()["labels"] == {"appVersion": "2.3.1", "reason": "pre-migration"}
        plain = (await api.post("/api/backup/create", headers=auth)).json()["filename"]
        _until(lambda: (copies / f"{name}.json").exists())

        patched = await api.patch(
            f"/api/backup/{name}",
            headers=auth,
            json={"labels": {"appVersion": None, "ticket": "OPS-7"}},
        )
        assert patched.status_code == 200, patched.text
        assert patched.json()["filename"] == name
        assert patched.json()["labels"] == {"reason": "pre-migration", "ticket": "OPS-7"}

        filtered = await api.get(
            "/api/backup/list", headers=auth, params={"label": "reason=pre-migration"}
        )
        both = await api.get(
            "/api/backup/list",
            headers=auth,
            params=[("label", "reason=pre-migration"), ("label", "ticket=OPS-7")],
        )
        none = await api.get("/api/backup/list", headers=auth, params={"label": "ticket=OPS-8"})
        every = await api.get(
            "/api/backup/list", headers=auth, params={"target": "*", "label": "ticket=OPS-7"}
        )
        unfiltered = await api.get("/api/backup/list", headers=auth)
        verified = await api.post(f"/api/backup/{name}/verify", headers=auth)
        audit = app.state.runtime.audit.read()

    assert [b["filename"] for b in filtered.json()["backups"]] == [name]
    assert [b["filename"] for b in both.json()["backups"]] == [name]
    assert none.json() == {"success": True, "backups": [], "count": 0}
    assert [b["filename"] for b in every.json()["backups"]] == [name]
    listed = {b["filename"]: b["labels"] for b in unfiltered.json()["backups"]}
    assert listed == {name: {"reason": "pre-migration", "ticket": "OPS-7"}, plain: {}}
    # Still signed (the verify trusts it, and records itself on the primary only), and the
    # relabelled manifest's signed bytes are the copy store's too.
    assert verified.json()["verified"] is True, verified.text
    on_primary = json.loads((primary / f"{name}.json").read_bytes())
    on_copy = json.loads((copies / f"{name}.json").read_bytes())
    assert on_primary["labels"] == {"reason": "pre-migration", "ticket": "OPS-7"}
    assert on_copy["labels"] == on_primary["labels"]
    assert on_copy["signature"]
    labelled = [e for e in audit if e.get("action") == "label"]
    assert [e["result"] for e in labelled] == ["started", "succeeded"]
    assert labelled[0]["backup"] == name


async def test_bad_labels_are_refused_and_unsigned_backups_are_never_labelled(
    make_settings: Callable[..., Settings], auth: dict[str, str]
) -> None:
    settings = make_settings()
    app = create_app(settings)
    an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
    planted = plant_backup(settings, an_hour_ago, signed=False)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as api:
        name = (await api.post("/api/backup/create", headers=auth)).json()["filename"]
        bad_key = await api.patch(
            f"/api/backup/{name}", headers=auth, json={"labels": {"bad key": "x"}}
        )
        too_many = await api.patch(
            f"/api/backup/{name}", headers=auth, json={"labels": {f"k{i}": "v" for i in range(17)}}
        )
        extra = await api.patch(f"/api/backup/{name}", headers=auth, json={"pinned": True})
        unsigned = await api.patch(
            f"/api/backup/{planted}", headers=auth, json={"labels": {"reason": "x"}}
        )
        missing = await api.patch(
            "/api/backup/backup-2020-01-01T00-00-00.sql", headers=auth, json={"labels": {}}
        )
        at_create = await api.post(
            "/api/backup/create", headers=auth, json={"labels": {"reason": None}}
        )
        bad_filter = await api.get("/api/backup/list", headers=auth, params={"label": "reason"})
        anonymous = await api.patch(f"/api/backup/{name}", json={"labels": {"a": "b"}})
    assert bad_key.status_code == 400
    assert bad_key.json()["error"] == "label key 'bad key' is not allowed"
    assert too_many.status_code == 400
    assert too_many.json()["error"] == "a backup has at most 16 labels"
    assert extra.status_code == 400
    assert unsigned.status_code == 409
    assert "has no signed manifest to label" in unsigned.json()["error"]
    assert missing.status_code == 404
    assert at_create.status_code == 400
    assert bad_filter.status_code == 400
    assert anonymous.status_code == 401
