"""Several instances, one store: three real `pgkeep serve` processes sharing a SeaweedFS
bucket and a control database. Nothing lost, nothing done twice, no overlap."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from pgkeep.throwaway.cluster import ThrowawayCluster
from pgkeep.throwaway.s3 import ThrowawayS3
from tests.blocking import pg_dump_pids
from tests.conftest import SECRET
from tests.test_serve_process import _token, start_server

TARGETS = ("a", "b", "c")
LEASE = 4


def _wait(predicate: Callable[[], object], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("condition not reached")


class Fleet:
    """Three instances of one deployment; each a process on its own port."""

    def __init__(
        self, tmp_path: Path, config: Path, env: dict[str, str], s3: ThrowawayS3, bucket: str
    ) -> None:
        self.tmp_path = tmp_path
        self.client = s3.client()
        self.bucket = bucket
        self.slow = ""
        self.env_control = ""  # the control database's name
        self.env = {
            "PGKEEP_CONFIG": str(config),
            "PGKEEP_JWT_SECRET": SECRET,
            "PGKEEP_SHUTDOWN_GRACE_SECONDS": "2",
            **env,
        }
        self.procs: list[subprocess.Popen[bytes]] = []
        self.bases: list[str] = []

    def start(self, count: int = 3) -> None:
        for n in range(count):
            # Each its own local disk, as on separate machines: only the store is shared.
            local = {"PGKEEP_AUDIT_LOG": str(self.tmp_path / f"instance-{n}" / "audit.jsonl")}
            proc, base = start_server(self.env | local, self.tmp_path / f"instance-{n}.log")
            self.procs.append(proc)
            self.bases.append(base)

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            proc.wait(timeout=60)

    def logs(self) -> str:
        return "".join(p.read_text() for p in sorted(self.tmp_path.glob("instance-*.log")))


@pytest.fixture
def fleet(
    cluster: ThrowawayCluster,
    s3_server: ThrowawayS3,
    slow_database: str,
    tmp_path: Path,
) -> Iterator[Fleet]:
    control = "control_" + secrets.token_hex(4)
    cluster.create_database(control)
    bucket = s3_server.create_bucket("fleet-" + secrets.token_hex(4))
    dbs = {name: f"fleet_{name}_{secrets.token_hex(3)}" for name in TARGETS}
    for db in dbs.values():
        cluster.create_database(db)
        cluster.execute(
            "CREATE TABLE t AS SELECT i, md5(i::text) AS h FROM generate_series(1, 20000) i", db
        )
    config = tmp_path / "pgkeep.toml"
    lines = [
        f'storage_url = "s3://{bucket}/backups"',
        f'backup_dir = "{tmp_path / "local"}"',
        f'pg_bin_dir = "{cluster.bin_dir}"',
        f'control_database_url = "{cluster.url(control)}"',
        "max_concurrent_dumps = 2",
        f"job_lease_seconds = {LEASE}",
        "retention_days = 0",
        *(f'[targets.{n}]\ndatabase_url = "{cluster.url(db)}"' for n, db in dbs.items()),
        f'[targets.slow]\ndatabase_url = "{slow_database}"\ndefault_compression = "gzip"'
        "\ndefault_level = 9",
    ]
    config.write_text("\n".join(lines) + "\n")
    env = {k: v for k, v in s3_server.env().items() if k.startswith("AWS_")}
    env |= {"PGKEEP_S3_ENDPOINT_URL": s3_server.endpoint, "PGKEEP_S3_REGION": "us-east-1"}
    fleet = Fleet(tmp_path, config, env, s3_server, bucket)
    fleet.slow = slow_database
    fleet.env_control = control
    try:
        fleet.start()
        yield fleet
    finally:
        fleet.stop()
        for db in (*dbs.values(), control):
            cluster.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


def _manifest(fleet: Fleet, target: str, name: str) -> dict[str, object]:
    body = fleet.client.get_object(Bucket=fleet.bucket, Key=f"backups/{target}/{name}.json")[
        "Body"
    ].read()
    document: dict[str, object] = json.loads(body)
    return document


def _finished(base: str, job_id: str, auth: dict[str, str]) -> dict[str, object]:
    """The job once it has ended, as `base` (any instance) reports it."""
    url = f"{base}/api/backup/jobs/{job_id}"
    _wait(lambda: httpx.get(url, headers=auth).json()["job"]["status"] not in ("queued", "running"))
    job: dict[str, object] = httpx.get(url, headers=auth).json()["job"]
    return job


def _uploads(fleet: Fleet) -> list[str]:
    listed = fleet.client.list_multipart_uploads(Bucket=fleet.bucket)
    return [u["Key"] for u in listed.get("Uploads", [])]


def test_thirty_creates_over_three_instances_never_overlap_and_none_is_lost(
    fleet: Fleet,
) -> None:
    auth = {"Authorization": f"Bearer {_token()}"}
    outcomes: list[tuple[str, int, dict[str, Any]]] = []
    lock = threading.Lock()

    def create(n: int) -> None:
        base, target = fleet.bases[n % 3], TARGETS[n % len(TARGETS)]
        response = httpx.post(
            f"{base}/api/backup/create?async=true&target={target}", headers=auth, timeout=60
        )
        with lock:
            outcomes.append((target, response.status_code, response.json()))

    threads = [threading.Thread(target=create, args=(n,)) for n in range(30)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    accepted = [(t, body["job"]) for t, code, body in outcomes if code == 202]
    refused = [(t, body) for t, code, body in outcomes if code == 409]
    assert len(accepted) + len(refused) == 30, [c for _, c, _ in outcomes]
    assert {t for t, _ in accepted} == set(TARGETS)  # each target got one in
    for _, body in refused:
        assert "already running" in str(body["error"])
        assert "on instance" in str(body["error"])  # names the job and where it runs

    finished: dict[str, list[str]] = {}
    for target, job in accepted:
        base = fleet.bases[int(str(job["id"]), 16) % 3]  # read from any instance
        done = _finished(base, str(job["id"]), auth)
        assert done["status"] == "succeeded", done
        finished.setdefault(target, []).append(str(done["filename"]))

    spans = []
    for target in TARGETS:
        listed = httpx.get(f"{fleet.bases[0]}/api/backup/list?target={target}", headers=auth)
        names = [b["filename"] for b in listed.json()["backups"]]
        assert sorted(names) == sorted(finished[target])  # none lost, none done twice
        for name in names:
            m = _manifest(fleet, target, name)
            spans.append(
                (
                    datetime.fromisoformat(str(m["startedAt"]).replace("Z", "+00:00")),
                    datetime.fromisoformat(str(m["finishedAt"]).replace("Z", "+00:00")),
                    target,
                )
            )
    for i, (start, end, target) in enumerate(spans):
        others = [s for s in spans[i + 1 :] if s[2] == target]
        assert all(end <= s or e <= start for s, e, _ in others), "two dumps of one target"
    assert _uploads(fleet) == []


def test_a_job_is_followed_and_cancelled_from_other_instances(fleet: Fleet) -> None:
    auth = {"Authorization": f"Bearer {_token()}"}
    first, second, third = fleet.bases
    job = httpx.post(
        f"{first}/api/backup/create?async=true&target=slow", headers=auth, timeout=30
    ).json()["job"]
    seen = httpx.get(f"{second}/api/backup/jobs/{job['id']}", headers=auth).json()["job"]
    assert seen["id"] == job["id"]
    events: list[str] = []
    with httpx.stream(
        "GET", f"{second}/api/backup/jobs/{job['id']}/events", headers=auth, timeout=60
    ) as stream:
        for line in stream.iter_lines():
            if line.startswith("data: "):
                events.append(line)
                if json.loads(line[6:])["progress"]["bytesWritten"] > 0:
                    break
    assert events, "no progress reached another instance"
    _wait(lambda: pg_dump_pids(fleet.slow))
    asked = time.monotonic()
    cancelled = httpx.delete(f"{third}/api/backup/jobs/{job['id']}", headers=auth, timeout=60)
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["job"]["status"] == "cancelled"
    _wait(lambda: not pg_dump_pids(fleet.slow), timeout=10)
    # Within a few lease beats (1 s each), not a lease lapse (30 s): seen at 6 s on a
    # machine whose two cores were busy with other work.
    assert time.monotonic() - asked < 15
    _wait(lambda: _uploads(fleet) == [], timeout=10)
    listed = httpx.get(f"{second}/api/backup/list?target=slow", headers=auth).json()
    assert listed["count"] == 0


def test_kill_9_of_the_instance_running_a_dump(fleet: Fleet) -> None:
    auth = {"Authorization": f"Bearer {_token()}"}
    victim, survivor = fleet.procs[0], fleet.bases[1]
    job = httpx.post(
        f"{fleet.bases[0]}/api/backup/create?async=true&target=slow", headers=auth, timeout=30
    ).json()["job"]
    _wait(lambda: _uploads(fleet))
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    killed = time.monotonic()

    def failed() -> bool:
        status = httpx.get(f"{survivor}/api/backup/jobs/{job['id']}", headers=auth).json()
        return bool(status["job"]["status"] == "failed")

    _wait(failed, timeout=LEASE + 10)
    assert time.monotonic() - killed < LEASE + 10
    done = httpx.get(f"{survivor}/api/backup/jobs/{job['id']}", headers=auth).json()["job"]
    assert done["error"].startswith("instance ")
    assert done["error"].endswith(" stopped")
    _wait(lambda: _uploads(fleet) == [], timeout=10)  # its upload aborted
    assert httpx.get(f"{survivor}/api/backup/list?target=slow", headers=auth).json()["count"] == 0
    again = httpx.post(
        f"{survivor}/api/backup/create?target=slow",
        headers=auth,
        json={"compression": "gzip", "level": 1},
        timeout=120,
    )
    assert again.status_code == 200, again.text
    assert "removed" in fleet.logs()


def test_a_ticket_from_one_instance_works_once_on_another(fleet: Fleet) -> None:
    auth = {"Authorization": f"Bearer {_token()}"}
    first, second, third = fleet.bases
    name = httpx.post(f"{first}/api/backup/create?target=a", headers=auth, timeout=60).json()[
        "filename"
    ]
    link = httpx.post(f"{first}/api/backup/download-link/{name}?target=a", headers=auth).json()
    url = link["url"]
    assert httpx.get(f"{second}{url}").status_code == 200
    again = httpx.get(f"{third}{url}")
    assert again.status_code == 401
    assert "used download ticket" in again.json()["error"]


def test_an_instance_pointed_at_another_control_database_refuses_to_start(
    fleet: Fleet, cluster: ThrowawayCluster, tmp_path: Path
) -> None:
    other = "control_other_" + secrets.token_hex(3)
    cluster.create_database(other)
    config = Path(fleet.env["PGKEEP_CONFIG"]).read_text()
    wrong = tmp_path / "wrong.toml"
    start = config.index("control_database_url")
    end = config.index("\n", start)
    wrong.write_text(
        config[:start] + f'control_database_url = "{cluster.url(other)}"' + config[end:]
    )
    out = subprocess.run(
        [sys.executable, "-m", "pgkeep", "serve", "--port", "1"],
        env={**os.environ, **fleet.env, "PGKEEP_CONFIG": str(wrong)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode != 0
    assert "belongs to the control database" in out.stderr
    assert other in out.stderr
    none = tmp_path / "none.toml"
    none.write_text(config[:start] + config[end:])
    out = subprocess.run(
        [sys.executable, "-m", "pgkeep", "serve", "--port", "1"],
        env={**os.environ, **fleet.env, "PGKEEP_CONFIG": str(none)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode != 0
    assert "set PGKEEP_CONTROL_DATABASE_URL" in out.stderr
    cluster.execute(f'DROP DATABASE "{other}" WITH (FORCE)')


def _audit_verify(fleet: Fleet) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pgkeep", "audit", "verify"],
        env={**os.environ, **fleet.env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_actions_on_every_instance_form_one_audit_chain(
    fleet: Fleet, cluster: ThrowawayCluster
) -> None:
    auth = {"Authorization": f"Bearer {_token()}"}

    def create(n: int) -> None:
        url = f"{fleet.bases[n]}/api/backup/create?target={TARGETS[n]}"
        assert httpx.post(url, headers=auth, timeout=60).status_code == 200

    threads = [threading.Thread(target=create, args=(n,)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    pages = [
        httpx.get(f"{base}/api/backup/audit?limit=100", headers=auth).json() for base in fleet.bases
    ]
    assert pages[0] == pages[1] == pages[2]  # every instance shows the one trail
    entries = pages[0]["entries"]
    assert pages[0]["total"] == len(entries)
    assert [e["seq"] for e in entries] == sorted((e["seq"] for e in entries), reverse=True)
    second = httpx.get(f"{fleet.bases[1]}/api/backup/audit?offset=2&limit=2", headers=auth)
    assert second.json()["entries"] == entries[2:4]
    creates = [e for e in entries if e["action"] == "create" and e["result"] == "succeeded"]
    assert sorted(e["target"] for e in creates) == sorted(TARGETS)
    seqs = sorted(e["seq"] for e in entries)
    assert seqs == list(range(1, len(seqs) + 1))  # appended under one lock: no gap, no twin
    verified = _audit_verify(fleet)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert f"intact: {len(entries)} entries in pgkeep.audit" in verified.stdout

    control = fleet.env_control
    first = min(e["seq"] for e in entries if e["result"] == "succeeded")
    cluster.execute(
        'UPDATE pgkeep.audit SET entry = replace(entry, \'"result": "succeeded"\','
        ' \'"result": "failed"\') WHERE seq = (SELECT min(seq) FROM pgkeep.audit'
        ' WHERE entry LIKE \'%"result": "succeeded"%\')',
        control,
    )
    broken = _audit_verify(fleet)
    assert broken.returncode != 0
    assert f"BROKEN at seq {first}" in broken.stdout, broken.stdout


def test_an_instance_cut_off_from_the_control_database_stops_its_dump(
    fleet: Fleet, cluster: ThrowawayCluster
) -> None:
    """Fencing: the owner cannot renew its lease, so within half of it (plus a beat) it stops
    its pg_dump and abandons its upload, before any other instance may take the target."""
    auth = {"Authorization": f"Bearer {_token()}"}
    job = httpx.post(
        f"{fleet.bases[0]}/api/backup/create?async=true&target=slow", headers=auth, timeout=30
    ).json()["job"]
    _wait(lambda: _uploads(fleet))
    assert pg_dump_pids(fleet.slow)
    control = fleet.env_control
    cluster.execute(f'ALTER DATABASE "{control}" WITH ALLOW_CONNECTIONS false')
    try:
        with psycopg.connect(cluster.url(), autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (control,),
            )
        cut = time.monotonic()
        _wait(lambda: not pg_dump_pids(fleet.slow), timeout=LEASE)
        stopped = time.monotonic() - cut
        assert stopped < LEASE / 2 + 1.5, stopped
        _wait(lambda: _uploads(fleet) == [], timeout=10)  # abandoned, not left to be swept
        assert "cut off from the control database" in fleet.logs()
    finally:
        cluster.execute(f'ALTER DATABASE "{control}" WITH ALLOW_CONNECTIONS true')
    url = f"{fleet.bases[1]}/api/backup/jobs/{job['id']}"

    def failed() -> bool:
        answer = httpx.get(url, headers=auth)  # 503 while the instance reconnects
        # Another instance may reap the lapsed lease first ("instance X stopped"); the owner
        # records its own ending, which it could not while cut off, at its next beat.
        job = answer.json()["job"] if answer.status_code == 200 else {}
        return job.get("status") == "failed" and "cut off" in (job.get("error") or "")

    _wait(failed, timeout=30)
    done = httpx.get(url, headers=auth).json()["job"]
    assert "cut off from the control database" in done["error"], done
    assert (
        httpx.get(f"{fleet.bases[2]}/api/backup/list?target=slow", headers=auth).json()["count"]
        == 0
    )
    again = httpx.post(
        f"{fleet.bases[1]}/api/backup/create?target=slow",
        headers=auth,
        json={"compression": "gzip", "level": 1},
        timeout=120,
    )
    assert again.status_code == 200, again.text
