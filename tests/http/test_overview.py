"""The fleet overview (GET /api/backup/targets) over real clusters and stores: a failing
target reads failing with the server's own cause, across a restart, until a backup
succeeds; a missed slot; a store that is down marks itself and hides nothing else."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from pgkeep import scheduling, wiring
from pgkeep.config import Settings, load_settings
from pgkeep.core.health import Missed
from pgkeep.errors import PgkeepError
from pgkeep.http.app import create_app
from pgkeep.throwaway.cluster import ThrowawayCluster
from pgkeep.throwaway.s3 import ThrowawayS3
from tests.conftest import SECRET, plant_backup

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def _serving(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """A running app (its lifespan too), as after a start of `pgkeep serve`."""
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://t") as api,
    ):
        yield api


def _two_targets(tmp_path: Path, cluster: ThrowawayCluster, good: str, missing: str) -> Path:
    path = tmp_path / "pgkeep.toml"
    path.write_text(
        f'jwt_secret = "{SECRET}"\nbackup_dir = "{tmp_path / "store"}"\n'
        f'pg_bin_dir = "{cluster.bin_dir}"\n'
        f'[targets.shop]\ndatabase_url = "{good}"\n'
        f'[targets.lost]\ndatabase_url = "{cluster.url(missing)}"\nretention_keep_last = 3\n'
    )
    return path


async def _rows(api: httpx.AsyncClient, auth: dict[str, str]) -> tuple[dict[str, Any], Any]:
    answer = await api.get("/api/backup/targets", headers=auth)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    return {row["name"]: row for row in body["targets"]}, body["totals"]


async def _jobs(api: httpx.AsyncClient, auth: dict[str, str], query: str) -> Any:
    answer = await api.get(f"/api/backup/jobs{query}", headers=auth)
    assert answer.status_code == 200, answer.text
    return answer.json()["jobs"]


async def test_a_failing_target_reads_failing_with_its_cause_across_a_restart_until_a_backup(
    tmp_path: Path, cluster: ThrowawayCluster, database: str, auth: dict[str, str]
) -> None:
    missing = "nope_" + secrets.token_hex(4)
    path = _two_targets(tmp_path, cluster, database, missing)
    async with _serving(load_settings(config=path)) as api:
        before = (await _rows(api, auth))[0]["lost"]
        assert (before["status"], before["lastFailure"]) == ("unreachable", None)
        made = await api.post("/api/backup/create?target=shop", headers=auth)
        assert made.status_code == 200, made.text
        failed = await api.post("/api/backup/create?target=lost", headers=auth)
        assert failed.status_code >= 500
        rows, totals = await _rows(api, auth)
        jobs = await _jobs(api, auth, "?status=failed")
        assert [(j["kind"], j["target"]) for j in jobs] == [("create", "lost")]
        assert jobs[0]["error"].startswith(f'database "{missing}" does not exist (cannot connect')
        [done] = await _jobs(api, auth, "?status=succeeded&kind=create&target=shop")
        assert done["filename"] == made.json()["filename"]
        assert await _jobs(api, auth, "?kind=verify") == []
        assert (await api.get("/api/backup/jobs?status=bogus", headers=auth)).status_code == 400
    lost, shop = rows["lost"], rows["shop"]
    assert (shop["status"], lost["status"]) == ("ok", "failing")
    assert lost["lastFailure"]["kind"] == "create"
    assert lost["lastFailure"]["cause"].startswith(f'database "{missing}" does not exist')
    assert lost["lastFailure"]["jobId"] == jobs[0]["id"]
    assert lost["reachable"] is False
    assert lost["retention"]["keepLast"] == 3
    assert lost["staleAfter"] is None
    assert shop["lastFailure"] is None
    assert [t["sizeBytes"] for t in shop["trend"]] == [shop["lastBackup"]["sizeBytes"]]
    assert shop["trend"][0]["durationMs"] >= 0
    assert shop["stores"] == [{"store": "primary", "ok": True, "error": None}]
    assert totals == {
        "targets": 2,
        "failing": 1,
        "stale": 0,
        "unreachable": 0,
        "gone": 0,
        "backups": 1,
        "bytes": {"primary": shop["sizeBytes"]},
    }

    async with _serving(load_settings(config=path)) as api:  # a restart
        rows, _ = await _rows(api, auth)
        assert rows["lost"]["status"] == "failing"
        assert rows["lost"]["lastFailure"] == lost["lastFailure"]
        cluster.create_database(missing)
        runtime = api._transport.app.state.runtime  # type: ignore[attr-defined]
        runtime.services["lost"].ready_ttl = 0.0  # its readiness, cached for seconds, anew
        try:
            made = await api.post("/api/backup/create?target=lost", headers=auth)
            assert made.status_code == 200, made.text
            rows, totals = await _rows(api, auth)
        finally:
            cluster.execute(f'DROP DATABASE IF EXISTS "{missing}" WITH (FORCE)')
    assert rows["lost"]["status"] == "ok"
    assert rows["lost"]["lastFailure"] == lost["lastFailure"]  # still told, as history
    assert totals["failing"] == 0


async def test_a_missed_slot_reads_failing_across_a_restart(
    make_settings: Callable[..., Settings], auth: dict[str, str]
) -> None:
    settings = make_settings()
    async with _serving(settings) as api:
        [name] = (await _rows(api, auth))[0]
        runtime = api._transport.app.state.runtime  # type: ignore[attr-defined]
        slot = datetime(2026, 1, 1, 4, tzinfo=UTC)
        scheduling.record(runtime, name, Missed("backup", slot, "the control database: down"))
    async with _serving(make_settings()) as api:
        row = (await _rows(api, auth))[0][name]
        assert row["status"] == "failing"
        assert row["lastFailure"] == {
            "at": "2026-01-01T04:00:00.000Z",
            "kind": "missed",
            "cause": "the control database: down (scheduled backup not run)",
            "jobId": None,
        }
        assert (await api.post("/api/backup/create", headers=auth)).status_code == 200
        assert (await _rows(api, auth))[0][name]["status"] == "ok"


async def test_a_store_that_is_down_marks_itself_and_the_rest_still_answers(
    tmp_path: Path,
    cluster: ThrowawayCluster,
    database: str,
    auth: dict[str, str],
    s3_server: ThrowawayS3,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A second SeaweedFS holds one target's copies and another target's primary store, and
    is killed: the route answers (it failed, so the console showed nothing), each store
    of it `ok: false` with its cause, the local store still counted."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_key)
    with ThrowawayS3(s3_server.access_key, s3_server.secret_key) as offsite:
        offsite.create_bucket("offsite")
        path = tmp_path / "pgkeep.toml"
        path.write_text(
            f'jwt_secret = "{SECRET}"\nbackup_dir = "{tmp_path / "store"}"\n'
            f'pg_bin_dir = "{cluster.bin_dir}"\ns3_region = "us-east-1"\n'
            f'[stores.off]\nurl = "s3://offsite/x"\nendpoint_url = "{offsite.endpoint}"\n'
            f'[targets.shop]\ndatabase_url = "{database}"\ncopy_to = ["off"]\n'
            f'[targets.far]\ndatabase_url = "{database}"\nstorage_url = "off"\n'
        )
        async with _serving(load_settings(config=path)) as api:
            made = await api.post("/api/backup/create?target=shop", headers=auth)
            assert made.status_code == 200, made.text
            offsite.pause()
            runtime = api._transport.app.state.runtime  # type: ignore[attr-defined]
            for service in runtime.services.values():  # past S3 listings' seconds of reuse
                for catalog in service.catalogs:
                    catalog.storage.changed_elsewhere()
            rows, totals = await _rows(api, auth)
            storage = await api.get("/api/backup/storage", headers=auth)
    assert storage.status_code == 200, storage.text
    primary, off = storage.json()["stores"]
    assert (primary["name"], primary["ok"], primary["backups"]) == ("primary", False, 1)
    assert "far: cannot reach the store s3://offsite/x" in primary["error"]
    by_target = {t["target"]: t for t in primary["targets"]}
    assert (by_target["shop"]["ok"], by_target["far"]["ok"]) == (True, False)
    assert (off["name"], off["kind"], off["role"], off["ok"]) == ("off", "s3", "copy", False)
    shop, far = rows["shop"], rows["far"]
    assert shop["count"] == 1
    primary, copy = shop["stores"]
    assert primary == {"store": "primary", "ok": True, "error": None}
    assert copy["store"] == "off"
    assert copy["ok"] is False
    assert "cannot reach the store s3://offsite/x" in copy["error"]
    assert far["stores"][0]["ok"] is False
    assert "cannot reach the store s3://offsite/x" in far["stores"][0]["error"]
    assert far["count"] == 0
    assert totals["bytes"] == {"primary": shop["sizeBytes"], "off": 0}


async def test_a_slot_the_ledger_could_not_be_asked_for_reads_failing_after_a_restart(
    make_settings: Callable[..., Settings], auth: dict[str, str]
) -> None:
    """The scheduler's own path: the schedule's ledger database does not exist (the
    control database is down), so the 04:00 slot cannot run; after a restart the target
    still reads failing, the cause naming the ledger's database."""
    ledger = "ledger_" + secrets.token_hex(4)
    settings = make_settings(schedule="0 4 * * *", schedule_database=ledger)
    start = datetime(2031, 1, 1, 3, 0, tzinfo=UTC)
    runtime = wiring.build(settings, clock=lambda: start)
    assert runtime.scheduler is not None
    [schedule] = runtime.scheduler.schedules
    slot = datetime(2031, 1, 1, 4, 0, tzinfo=UTC)
    with pytest.raises(PgkeepError):
        schedule.tick(slot)
    runtime.shared.board.close()
    async with _serving(make_settings()) as api:  # a restart, without the schedule
        [row] = (await _rows(api, auth))[0].values()
    assert row["status"] == "failing"
    failure = row["lastFailure"]
    assert (failure["kind"], failure["at"], failure["jobId"]) == (
        "missed",
        "2031-01-01T04:00:00.000Z",
        None,
    )
    assert failure["cause"].startswith(f'database "{ledger}" does not exist (cannot connect')
    assert failure["cause"].endswith("(scheduled backup not run)")


async def test_a_target_without_a_recent_backup_reads_stale(
    make_settings: Callable[..., Settings], auth: dict[str, str]
) -> None:
    settings = make_settings(stale_after="1h")
    old = plant_backup(settings, datetime.now(UTC) - timedelta(hours=2))
    async with _serving(settings) as api:
        [row] = (await _rows(api, auth))[0].values()
        assert (row["status"], row["staleAfter"], row["lastBackup"]["filename"]) == (
            "stale",
            3600,
            old,
        )
        assert (await api.post("/api/backup/create", headers=auth)).status_code == 200
        [row] = (await _rows(api, auth))[0].values()
        assert row["status"] == "ok"
