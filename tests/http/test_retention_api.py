"""Pins and the retention preview over HTTP; the preview equals what a real run deletes."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from pgkeep.config import Settings
from pgkeep.http.app import create_app
from tests.conftest import backup_files, plant_backup

pytestmark = pytest.mark.anyio


def _plant(settings: Settings, days: float) -> str:
    return plant_backup(settings, datetime.now(UTC).replace(microsecond=0) - timedelta(days=days))


async def test_preview_equals_the_real_run_and_pins_hold(
    make_settings: Callable[..., Settings], auth: dict[str, str], backup_dir: Path
) -> None:
    settings = make_settings(retention_keep_last=3)
    old = [_plant(settings, d) for d in (40, 41, 42, 43)]
    young = _plant(settings, 2)
    transport = httpx.ASGITransport(app=create_app(settings))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as api:
        pin = await api.post(f"/api/backup/{old[3]}/pin", headers=auth)
        assert pin.json() == {"success": True, "filename": old[3], "pinned": True}
        refused = await api.delete(f"/api/backup/{old[3]}", headers=auth)
        assert (refused.status_code, refused.json()["error"]) == (
            409,
            f"backup {old[3]!r} is pinned",
        )
        preview = (await api.get("/api/backup/retention/preview", headers=auth)).json()
        assert preview["policy"]["keepLast"] == 3
        to_delete = {row["filename"] for row in preview["delete"]}
        # The last 3 are young, old[0] and old[1]; old[3] is pinned.
        assert to_delete == {old[2]}
        reasons = {row["filename"]: row["reasons"] for row in preview["keep"]}
        assert reasons[old[3]] == ["pinned"]
        assert reasons[young] == [
            "within 30 days",
            "among the last 3",
            "among the newest 1 good (floor)",
        ]
        files = {n for n in backup_files(backup_dir) if not n.endswith(".json")}
        assert files == {*old, young, old[3] + ".pin"}  # the preview deleted nothing

        created = (await api.post("/api/backup/create", headers=auth)).json()["filename"]
        remaining = {n for n in backup_files(backup_dir) if not n.endswith((".json", ".pin"))}
        # The new backup takes a "last 3" slot, so old[1] goes too.
        assert remaining == {created, young, old[0], old[3]}
        unpin = await api.delete(f"/api/backup/{old[3]}/pin", headers=auth)
        assert unpin.json()["pinned"] is False
        after = (await api.get("/api/backup/retention/preview", headers=auth)).json()
        assert {row["filename"] for row in after["delete"]} == {old[3]}
        assert old[3] + ".pin" not in backup_files(backup_dir)
        assert (await api.delete(f"/api/backup/{old[3]}", headers=auth)).status_code == 200


async def test_preview_then_run_delete_the_same(
    make_settings: Callable[..., Settings], auth: dict[str, str], backup_dir: Path
) -> None:
    settings = make_settings()
    for days in (31, 35, 60, 29, 10):
        _plant(settings, days)
    transport = httpx.ASGITransport(app=create_app(settings))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as api:
        created = (await api.post("/api/backup/create", headers=auth)).json()["filename"]
        # Plant the same shape again and compare the preview with the next run's deletions.
        for days in (32, 33):
            _plant(settings, days)
        preview = (await api.get("/api/backup/retention/preview", headers=auth)).json()
        predicted = {row["filename"] for row in preview["delete"]}
        before = set(backup_files(backup_dir))
        second = (await api.post("/api/backup/create", headers=auth)).json()["filename"]
        after = set(backup_files(backup_dir))
    deleted = {n for n in before - after if not n.endswith(".json")}
    assert len(predicted) == 2
    assert deleted == predicted
    assert created in after
    assert second in after
