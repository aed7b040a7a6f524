"""`pgkeep serve` as a real process over TCP: the wire, the access log, secrets kept out."""

from __future__ import annotations

import itertools
import json
import logging
import os
import resource
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from pgkeep import wiring
from pgkeep.config import Settings
from pgkeep.core.schedule import Scheduler
from pgkeep.throwaway.cluster import ThrowawayCluster, _free_port
from pgkeep.throwaway.s3 import ThrowawayS3
from tests.conftest import SECRET


def start_server(
    env: dict[str, str], log: Path, *, max_files: int | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    """`python -m pgkeep serve` on a free port, once it answers; the process and base URL.

    `max_files` caps the server's file descriptors (hard limit), so a flood test stays small.
    """
    port = _free_port()

    def limit() -> None:
        if max_files is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (max_files, max_files))

    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pgkeep", "serve", "--port", str(port)],
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=limit,
        )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/healthz").status_code == 200:
                return proc, base
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError(log.read_text())


@contextmanager
def serving(env: dict[str, str], log: Path) -> Iterator[str]:
    """A served pgkeep for the block; stopped afterwards."""
    proc, base = start_server(env, log)
    try:
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def server_env(database: str, backup_dir: Path, cluster: ThrowawayCluster) -> dict[str, str]:
    return {
        "PGKEEP_DATABASE_URL": database,
        "PGKEEP_JWT_SECRET": SECRET,
        "PGKEEP_BACKUP_DIR": str(backup_dir),
        "PGKEEP_PG_BIN_DIR": str(cluster.bin_dir),
        # A test's server stopped with a dump still running waits this long, not 30 s.
        "PGKEEP_SHUTDOWN_GRACE_SECONDS": "2",
    }


def slow_server_env(database: str, backup_dir: Path, cluster: ThrowawayCluster) -> dict[str, str]:
    """As server_env, with gzip level 9 by default: dumps slow enough to watch."""
    env = server_env(database, backup_dir, cluster)
    return env | {"PGKEEP_DEFAULT_COMPRESSION": "gzip", "PGKEEP_DEFAULT_LEVEL": "9"}


@pytest.fixture
def server(
    database: str, backup_dir: Path, cluster: ThrowawayCluster, tmp_path: Path
) -> Iterator[tuple[str, Path]]:
    log = tmp_path / "server.log"
    with serving(server_env(database, backup_dir, cluster), log) as base:
        yield base, log


def _token() -> str:
    return subprocess.run(
        [sys.executable, "-m", "pgkeep", "token", "--sub", "ci"],
        env={**os.environ, "PGKEEP_JWT_SECRET": SECRET},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def test_serve_process_round_trip_over_tcp(
    server: tuple[str, Path], cluster: ThrowawayCluster, backup_dir: Path
) -> None:
    base, log = server
    token = _token()
    auth = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=base, timeout=60) as client:
        created = client.post("/api/backup/create", headers=auth).json()
        name = created["filename"]
        listed = client.get("/api/backup/list", headers=auth).json()
        with client.stream("GET", f"/api/backup/download/{name}", params={"token": token}) as r:
            body = b"".join(r.iter_bytes())
            headers = r.headers
        missing = client.get("/api/backup/list")
        deleted = client.delete(f"/api/backup/{name}", headers=auth)
    assert listed["count"] == 1
    assert len(body) == created["sizeBytes"]
    assert body.startswith(b"--\n-- PostgreSQL database dump")
    assert headers["content-type"] == "application/sql"
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    assert deleted.status_code == 200
    text = log.read_text()
    assert f'"GET /api/backup/download/{name}?token=[REDACTED]" 200' in text
    assert "backup finished target=" in text
    assert token not in text
    assert cluster.password not in text
    assert "server: uvicorn" not in str(headers).lower()


def test_serve_process_progress_moves_over_sse(
    slow_database: str, backup_dir: Path, cluster: ThrowawayCluster, tmp_path: Path
) -> None:
    env = slow_server_env(slow_database, backup_dir, cluster)
    auth = {"Authorization": f"Bearer {_token()}"}
    events: list[tuple[float, str, dict[str, object]]] = []
    with serving(env, tmp_path / "server.log") as base, httpx.Client(base_url=base) as client:
        job = client.post("/api/backup/create?async=true", headers=auth).json()["job"]
        url = f"/api/backup/jobs/{job['id']}/events"
        with client.stream("GET", url, headers=auth, timeout=120) as stream:
            name = ""
            for line in stream.iter_lines():
                if line.startswith("event: "):
                    name = line[7:]
                elif line.startswith("data: "):
                    events.append((time.monotonic(), name, json.loads(line[6:])))
    assert events[-1][1] == "end"
    assert events[-1][2]["status"] == "succeeded"
    moving = [(t, e["progress"]) for t, n, e in events if n == "progress"]
    written = [p["bytesWritten"] for _, p in moving]  # type: ignore[index]
    percents = [p["percent"] for _, p in moving if p["percent"]]  # type: ignore[index]
    assert len(moving) >= 4, events
    assert written == sorted(written)
    assert len(set(written)) >= 4
    assert len(set(percents)) >= 3
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(moving)]
    assert min(gaps) >= 0.4  # at most every 0.5 s (with a little scheduling slack)


def test_serve_process_json_logs_carry_request_ids(
    database: str, backup_dir: Path, cluster: ThrowawayCluster, tmp_path: Path
) -> None:
    env = server_env(database, backup_dir, cluster) | {"PGKEEP_LOG_FORMAT": "json"}
    log = tmp_path / "server.log"
    auth = {"Authorization": f"Bearer {_token()}", "X-Request-Id": "trace-42"}
    with serving(env, log) as base, httpx.Client(base_url=base, timeout=60) as client:
        created = client.post("/api/backup/create", headers=auth)
        fresh = client.get("/api/backup/list", headers={"Authorization": auth["Authorization"]})
    assert created.headers["x-request-id"] == "trace-42"
    assert len(fresh.headers["x-request-id"]) == 16
    records = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    assert records, log.read_text()
    assert all({"time", "level", "logger", "message"} <= set(r) for r in records)
    tagged = [r for r in records if r.get("request_id") == "trace-42"]
    assert any(r["message"].startswith('127.0.0.1 "POST /api/backup/create" 200') for r in tagged)
    assert any(r["message"].startswith("backup finished target=") for r in tagged)
    audit = (backup_dir / "pgkeep-audit.jsonl").read_text()
    assert '"request_id": "trace-42"' in audit


@pytest.mark.parametrize("shared", [False, True], ids=["ledger", "control-database"])
def test_two_processes_race_for_one_scheduled_slot(
    make_settings: Callable[..., Settings],
    cluster: ThrowawayCluster,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    shared: bool,
) -> None:
    """Two runtimes (as two processes build them), each with its own backup directory and
    ledger connection, wake for the same slot at once; exactly one backup is taken. Shared:
    as instances with a control database (jobs and slots there too). Their clock is
    injected, so no real cron minute is waited for."""
    day = datetime(2031, 1, 1, tzinfo=UTC) + timedelta(days=secrets.randbelow(3000))
    now = [day.replace(hour=12, minute=0, second=30)]
    extra: dict[str, object] = {}
    if shared:
        control = "race_control_" + secrets.token_hex(3)
        cluster.create_database(control)
        extra["control_database_url"] = cluster.url(control)
    runtimes = [
        wiring.build(
            make_settings(backup_dir=tmp_path / d, schedule="* * * * *", **extra),
            clock=lambda: now[0],
        )
        for d in ("a", "b")
    ]
    schedulers = [r.scheduler for r in runtimes]
    assert all(s is not None for s in schedulers)
    # First ticks, before the 12:01 slot: nothing is due (and no catch-up: this database's
    # schedule never ran before).
    for scheduler in schedulers:
        assert scheduler is not None
        scheduler.tick()
    now[0] = day.replace(hour=12, minute=1, second=0, microsecond=200_000)
    together = threading.Barrier(2)

    def wake(scheduler: Scheduler) -> None:
        together.wait()
        scheduler.tick()

    with caplog.at_level(logging.INFO):
        threads = [threading.Thread(target=wake, args=(s,)) for s in schedulers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
    for runtime in runtimes:
        runtime.shared.board.close()
    taken = [p.name for d in ("a", "b") for p in (tmp_path / d).glob("backup-*.sql")]
    assert len(taken) == 1, taken
    assert caplog.text.count("scheduled backup started for slot") == 1
    assert "already taken by another process" in caplog.text


@pytest.mark.parametrize("fault", ["wrong secret", "no bucket", "port in use"])
def test_a_start_that_cannot_serve_says_why_in_one_line_before_announcing_itself(
    database: str,
    backup_dir: Path,
    cluster: ThrowawayCluster,
    s3_server: ThrowawayS3,
    fault: str,
) -> None:
    """Seen on the previous main: a wrong S3 secret ended the start with a 3 KB escaped
    traceback on one log line, after "serving on …" was already logged."""
    env = server_env(database, backup_dir, cluster) | s3_server.env()
    env |= {"PGKEEP_STORAGE_URL": "s3://pgkeep-tests/start", "PGKEEP_S3_REGION": "us-east-1"}
    env["PGKEEP_S3_ENDPOINT_URL"] = s3_server.endpoint
    port = _free_port()
    taken = socket.create_server(("127.0.0.1", port)) if fault == "port in use" else None
    if fault == "wrong secret":
        env["AWS_SECRET_ACCESS_KEY"] = "not-" + env["AWS_SECRET_ACCESS_KEY"]
    elif fault == "no bucket":
        env["PGKEEP_STORAGE_URL"] = "s3://no-such-bucket-here/start"
    try:
        done = subprocess.run(
            [sys.executable, "-m", "pgkeep", "serve", "--port", str(port)],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        if taken is not None:
            taken.close()
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    errors = [line for line in output.splitlines() if line.startswith("pgkeep: error:")]
    assert len(errors) == 1, output
    assert "Traceback" not in output
    assert "serving" not in output
    expected = {
        "wrong secret": "AWS_SECRET_ACCESS_KEY",
        "no bucket": "no-such-bucket-here",
        "port in use": "PGKEEP_PORT",
    }[fault]
    assert expected in errors[0], output
    assert len(errors[0]) < 600


def test_a_dropped_databases_backups_are_served_after_a_restart_of_pgkeep_serve(
    cluster: ThrowawayCluster, tmp_path: Path
) -> None:
    """Real `pgkeep serve` processes, stopped and started: a found database is dropped between
    the two; the second still lists its target (gone) and serves its backup."""
    name = "served_gone_" + tmp_path.name[-6:].lower().replace("-", "_")
    cluster.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    cluster.create_database(name)
    cluster.execute("CREATE TABLE t (i int); INSERT INTO t VALUES (1)", name)
    config = tmp_path / "pgkeep.toml"
    config.write_text(
        f'backup_dir = "{tmp_path / "store"}"\npg_bin_dir = "{cluster.bin_dir}"\n'
        f'[servers.main]\nurl = "{cluster.url()}"\ninclude = ["{name}"]\n'
    )
    env = {"PGKEEP_CONFIG": str(config), "PGKEEP_JWT_SECRET": SECRET}
    auth = {"Authorization": f"Bearer {_token()}"}
    target = f"main.{name}"
    log = tmp_path / "server.log"
    with serving(env, log) as base:
        created = httpx.post(f"{base}/api/backup/create?target={target}", headers=auth, timeout=60)
        assert created.status_code == 200, created.text
    backup = created.json()["filename"]
    cluster.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    with serving(env, log) as base:
        listed = httpx.get(f"{base}/api/backup/list?target={target}", headers=auth).json()
        shown = httpx.get(f"{base}/api/backup/targets", headers=auth).json()["targets"]
        download = httpx.get(f"{base}/api/backup/download/{backup}?target={target}", headers=auth)
    assert [b["filename"] for b in listed["backups"]] == [backup], listed
    assert [t["gone"] for t in shown if t["name"] == target] == [True]
    assert download.status_code == 200
