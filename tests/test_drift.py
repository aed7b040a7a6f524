"""Drift alarms against a real cluster: a mass deletion between two backups is told, marks the
new backup, pins the one before it (before retention runs), and only an operator unpins it."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from pgkeep.config import Settings
from pgkeep.http.app import create_app
from tests.conftest import connect
from tests.test_notify import NOTIFY_SECRET, Receiver, receiver  # noqa: F401 (a fixture)

pytestmark = pytest.mark.anyio


def _app(make_settings: Callable[..., Settings], **overrides: Any) -> FastAPI:
    app = create_app(make_settings(notify_secret=NOTIFY_SECRET, **overrides))
    if app.state.runtime.notifier is not None:
        app.state.runtime.notifier._backoff = 0.01
    return app


def _seed(database: str) -> None:
    with connect(database) as conn:
        conn.execute("CREATE TABLE public.orders (id int PRIMARY KEY, note text)")
        conn.execute("INSERT INTO public.orders SELECT g, 'n' FROM generate_series(1, 5000) g")
        conn.execute("CREATE TABLE public.audit_old (id int)")
        conn.execute("INSERT INTO public.audit_old SELECT generate_series(1, 10)")


async def _create(api: httpx.AsyncClient, auth: dict[str, str]) -> str:
    created = await api.post("/api/backup/create", headers=auth)
    assert created.status_code == 200, created.text
    return str(created.json()["filename"])


async def _items(api: httpx.AsyncClient, auth: dict[str, str]) -> dict[str, dict[str, Any]]:
    listed = (await api.get("/api/backup/list", headers=auth)).json()["backups"]
    return {item["filename"]: item for item in listed}


async def test_a_mass_deletion_is_drift_and_pins_the_backup_from_before_it(
    make_settings: Callable[..., Settings],
    database: str,
    backup_dir: Path,
    receiver: Receiver,  # noqa: F811
    auth: dict[str, str],
) -> None:
    _seed(database)
    # Retention keeps only the newest: without the pin, the backup from before goes at once.
    app = _app(
        make_settings,
        notify_urls=receiver.url,
        retention_days=0,
        retention_keep_last=1,
        retention_min_keep=1,
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as api:
        before = await _create(api, auth)
        with connect(database) as conn:
            conn.execute("DELETE FROM public.orders WHERE id > 100")
            conn.execute("DROP TABLE public.audit_old")
        after = await _create(api, auth)
        items = await _items(api, auth)
        assert set(items) == {before, after}, "the backup from before the deletion was deleted"
        assert items[before]["drift"] is None
        drift = items[after]["drift"]
        assert drift["previous"] == before
        assert drift["tables"] == [
            {"table": "public.audit_old", "before": 10, "after": None},
            {"table": "public.orders", "before": 5000, "after": 100},
        ]
        assert "table public.orders lost 4900 of 5000 rows" in drift["reasons"]
        pin = (backup_dir / f"{before}.pin").read_text()
        assert pin == f"pgkeep: drift before {after}"

        # The alert names the tables and the numbers.
        messages = [json.loads(body) for _, body in receiver.wait_for(1)]
        [alert] = [m for m in messages if m["event"] == "backup.drift"]
        assert alert["filename"] == after
        assert "public.orders lost 4900 of 5000 rows" in alert["text"]
        assert "public.audit_old is gone" in alert["text"]

        # The next backup compares with the drifted one (nothing more lost): no drift, and
        # the automatic pin stays until an operator releases it.
        third = await _create(api, auth)
        items = await _items(api, auth)
        assert items[third]["drift"] is None
        assert before in items
        assert after not in items
        unpinned = await api.delete(f"/api/backup/{before}/pin", headers=auth)
        assert unpinned.status_code == 200
        await _create(api, auth)
        assert before not in await _items(api, auth)


async def test_drift_alarms_can_be_turned_off(
    make_settings: Callable[..., Settings],
    database: str,
    backup_dir: Path,
    auth: dict[str, str],
) -> None:
    _seed(database)
    app = _app(make_settings, drift_alarms=False)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as api:
        before = await _create(api, auth)
        with connect(database) as conn:
            conn.execute("TRUNCATE public.orders")
        after = await _create(api, auth)
        items = await _items(api, auth)
    assert items[after]["drift"] is None
    assert not (backup_dir / f"{before}.pin").exists()


async def test_a_flapping_database_pins_no_more_than_the_cap(
    make_settings: Callable[..., Settings],
    database: str,
    backup_dir: Path,
    receiver: Receiver,  # noqa: F811
    auth: dict[str, str],
) -> None:
    """A database owner who deletes and puts back rows before every backup would have every
    backup pinned, and retention would never free the store: past the cap drift is still
    told, names why nothing was pinned, and retention runs. An operator's pins don't count."""
    from pgkeep.core.drift import MAX_AUTOMATIC_PINS

    _seed(database)
    backup_dir.mkdir(mode=0o700, exist_ok=True)
    for day in range(1, MAX_AUTOMATIC_PINS + 1):
        name = f"backup-2020-01-{day:02d}T00-00-00.sql.pin"
        (backup_dir / name).write_text(
            f"pgkeep: drift before backup-2020-02-{day:02d}T00-00-00.sql"
        )
    (backup_dir / "backup-2020-03-01T00-00-00.sql.pin").write_text("alice: release day")
    app = _app(
        make_settings,
        notify_urls=receiver.url,
        retention_days=0,
        retention_keep_last=1,
        retention_min_keep=1,
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as api:
        before = await _create(api, auth)
        with connect(database) as conn:
            conn.execute("TRUNCATE public.orders")
        after = await _create(api, auth)
        items = await _items(api, auth)
    assert items[after]["drift"]["previous"] == before
    assert not (backup_dir / f"{before}.pin").exists()
    assert before not in items  # retention ran: nothing pinned it
    messages = [json.loads(body) for _, body in receiver.wait_for(1)]
    [alert] = [m for m in messages if m["event"] == "backup.drift"]
    assert f"{MAX_AUTOMATIC_PINS} automatic drift pins are held already" in alert["text"]
