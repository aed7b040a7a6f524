"""SIGTERM to a real `pgkeep serve`: no job taken any more, queued jobs handed back, a
download in flight finished, running dumps given the grace period then cancelled and
cleaned up, and each job's record saying which."""

from __future__ import annotations

import hashlib
import json
import signal
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from pgkeep import wiring
from pgkeep.config import Settings
from pgkeep.core.events import Actor
from pgkeep.errors import Unavailable
from pgkeep.throwaway.cluster import ThrowawayCluster
from tests.blocking import pg_dump_pids
from tests.conftest import SECRET
from tests.test_serve_process import _token, start_server

GRACE = 2


def _config(tmp_path: Path, cluster: ThrowawayCluster, slow: str, small: str) -> Path:
    backups = tmp_path / "backups"
    config = tmp_path / "pgkeep.toml"
    config.write_text(
        f'backup_dir = "{backups}"\n'
        f'pg_bin_dir = "{cluster.bin_dir}"\n'
        "max_concurrent_dumps = 2\n"
        f"shutdown_grace_seconds = {GRACE}\n"
        "retention_days = 0\n"
        f'[targets.slow1]\ndatabase_url = "{slow}"\n'
        'default_compression = "gzip"\ndefault_level = 9\n'
        f'[targets.slow2]\ndatabase_url = "{slow}"\n'
        'default_compression = "gzip"\ndefault_level = 9\n'
        f'[targets.small]\ndatabase_url = "{small}"\n'
    )
    return config


def test_sigterm_hands_back_queued_jobs_and_cleans_up_running_dumps(
    cluster: ThrowawayCluster, slow_database: str, database: str, tmp_path: Path
) -> None:
    config = _config(tmp_path, cluster, slow_database, database)
    env = {"PGKEEP_CONFIG": str(config), "PGKEEP_JWT_SECRET": SECRET}
    log = tmp_path / "server.log"
    auth = {"Authorization": f"Bearer {_token()}"}
    proc, base = start_server(env, log)
    try:
        with httpx.Client(base_url=base, headers=auth, timeout=120) as client:
            # A big backup to download while the server shuts down.
            body = {"format": "plain", "compression": "none"}
            made = client.post("/api/backup/create?target=slow1", json=body).json()
            name = made["filename"]
            manifest = json.loads((tmp_path / "backups" / "slow1" / f"{name}.json").read_text())
            jobs = {
                target: client.post(f"/api/backup/create?async=true&target={target}").json()["job"]
                for target in ("slow1", "slow2", "small")
            }
            assert [jobs[t]["status"] for t in ("slow1", "slow2", "small")] == [
                "running",
                "running",
                "queued",
            ]
            digest = hashlib.sha256()
            got = 0
            with client.stream("GET", f"/api/backup/download/{name}?target=slow1") as download:
                chunks = download.iter_bytes()
                first = next(chunks)
                digest.update(first)
                got += len(first)
                proc.send_signal(signal.SIGTERM)
                time.sleep(0.5)
                # No new connection is taken (a job submitted meanwhile by the scheduler,
                # or a request already read, gets 503: tests/core/test_jobs_shutdown.py).
                with pytest.raises(httpx.ConnectError):
                    httpx.post(f"{base}/api/backup/create?target=small", headers=auth)
                for chunk in chunks:
                    digest.update(chunk)
                    got += len(chunk)
            assert got == manifest["sizeBytes"]
            assert digest.hexdigest() == manifest["sha256"]  # the download finished whole
        started = time.monotonic()
        # uvicorn raises the caught SIGTERM again once shut down: the conventional exit.
        assert proc.wait(timeout=60) in (0, -signal.SIGTERM)
        assert time.monotonic() - started < GRACE + 20
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert pg_dump_pids(slow_database) == []
    leftovers = [p.name for p in (tmp_path / "backups").rglob("*") if ".partial" in p.name]
    assert leftovers == []
    text = log.read_text()
    assert f"queued job {jobs['small']['id']} (create small) handed back" in text
    for target in ("slow1", "slow2"):
        assert f"job {jobs[target]['id']} cancelled and cleaned up" in text

    # The records say which, on the next start.
    proc, base = start_server(env, log)
    try:
        with httpx.Client(base_url=base, headers=auth, timeout=60) as client:
            small = client.get(f"/api/backup/jobs/{jobs['small']['id']}").json()["job"]
            assert small["status"] == "cancelled"
            assert "not started: instance" in small["error"]
            assert "is shutting down" in small["error"]
            for target in ("slow1", "slow2"):
                job = client.get(f"/api/backup/jobs/{jobs[target]['id']}").json()["job"]
                assert job["status"] == "cancelled", job
                assert "shut down before it finished" in job["error"]
            listed = client.get("/api/backup/list?target=slow2").json()["backups"]
            assert listed == []
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def test_shutting_down_stops_the_scheduler_and_refuses_new_jobs(
    make_settings: Callable[..., Settings],
) -> None:
    """A slot claimed by an instance that cannot start it would be lost to the others."""
    runtime = wiring.build(make_settings(schedule="0 3 * * *"))
    assert runtime.scheduler is not None
    runtime.scheduler.start()
    runtime.shutting_down()
    deadline = time.monotonic() + 5
    while runtime.scheduler.alive and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not runtime.scheduler.alive
    with pytest.raises(Unavailable, match="is shutting down"):
        runtime.service().start_create(None, Actor("test", "cli"))
