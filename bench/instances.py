"""`make bench`, several instances: three `pgkeep serve` processes, one SeaweedFS store,
one control database.

- Latency: a create started on one instance, watched at once on it and on another
  (status polled every 5 ms, and the server-sent event stream): how much later the
  other instance sees the job finished than the one running it.
- Throughput: 30 small databases (2,000 rows each, one target each), a create for
  every one submitted at once, spread over the three instances, against the same
  30 submitted to one instance. The dump limit (PGKEEP_MAX_CONCURRENT_DUMPS=2) is
  global, so three instances are not expected to be faster: the cost measured is
  the coordination's.

Writes docs/benchmarks-instances.md and .json. Run alone with
`python bench/instances.py`, or as part of bench/run.py.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from common import RUNS, SECRET, token

from pgkeep.throwaway.cluster import ThrowawayCluster, _free_port, available_bin_dirs
from pgkeep.throwaway.s3 import ThrowawayS3

ROOT = Path(__file__).parents[1]
COUNT = int(os.environ.get("BENCH_INSTANCE_TARGETS", "30"))
LATENCY_SAMPLES = 4 * RUNS
INSTANCES = 3


def _databases(cluster: ThrowawayCluster) -> list[str]:
    names = [f"inst_{i:03d}" for i in range(COUNT)]
    for name in names:
        cluster.create_database(name)
        cluster.execute(
            "CREATE TABLE t AS SELECT i, md5(i::text) AS h FROM generate_series(1, 2000) i", name
        )
    cluster.create_database("inst_watch")  # about a second to dump: long enough to watch
    cluster.execute(
        "CREATE TABLE t AS SELECT i, md5(i::text) AS h FROM generate_series(1, 400000) i",
        "inst_watch",
    )
    return names


def _config(cluster: ThrowawayCluster, work: Path, bucket: str, names: list[str]) -> Path:
    control = "inst_control_" + secrets.token_hex(3)
    cluster.create_database(control)
    lines = [
        f'storage_url = "s3://{bucket}/bench"',
        f'backup_dir = "{work / "local"}"',
        f'pg_bin_dir = "{cluster.bin_dir}"',
        f'control_database_url = "{cluster.url(control)}"',
        "max_concurrent_dumps = 2",
        "retention_days = 0",
        *(f'[targets.{n}]\ndatabase_url = "{cluster.url(n)}"' for n in [*names, "inst_watch"]),
    ]
    path = work / "instances.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


@contextmanager
def _instances(config: Path, s3: ThrowawayS3, work: Path) -> Iterator[list[str]]:
    procs, bases = [], []
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("PGKEEP_", "AWS_"))}
    try:
        for n in range(INSTANCES):
            port = _free_port()
            env = {
                **base_env,
                **s3.env(),
                "PGKEEP_CONFIG": str(config),
                "PGKEEP_JWT_SECRET": SECRET,
                "PGKEEP_AUDIT_LOG": str(work / f"audit-{n}.jsonl"),
                "PGKEEP_LOG_LEVEL": "WARNING",
            }
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "pgkeep", "serve", "--port", str(port)],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
            bases.append(f"http://127.0.0.1:{port}")
        for base in bases:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{base} did not start")
                time.sleep(0.1)
        yield bases
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=60)


def _finished_at(client: httpx.Client, url: str, seen: dict[str, float], key: str) -> None:
    while True:
        if client.get(url).json()["job"]["status"] not in ("queued", "running"):
            seen[key] = time.perf_counter()
            return
        time.sleep(0.005)


def _end_event_at(client: httpx.Client, url: str, seen: dict[str, float], key: str) -> None:
    with client.stream("GET", url) as events:
        for line in events.iter_lines():
            if line == "event: end":
                seen[key] = time.perf_counter()
                return


def measure_latency(bases: list[str], auth: dict[str, str]) -> dict[str, Any]:
    polled, streamed, own_streamed = [], [], []
    with httpx.Client(headers=auth, timeout=120) as client:
        for i in range(LATENCY_SAMPLES):
            owner, other = bases[i % INSTANCES], bases[(i + 1) % INSTANCES]
            job = client.post(f"{owner}/api/backup/create?async=true&target=inst_watch").json()
            path = f"/api/backup/jobs/{job['job']['id']}"
            seen: dict[str, float] = {}
            watchers = [
                threading.Thread(target=_finished_at, args=(client, owner + path, seen, "own")),
                threading.Thread(target=_finished_at, args=(client, other + path, seen, "other")),
                threading.Thread(
                    target=_end_event_at,
                    args=(client, owner + path + "/events", seen, "own-sse"),
                ),
                threading.Thread(
                    target=_end_event_at,
                    args=(client, other + path + "/events", seen, "other-sse"),
                ),
            ]
            for watcher in watchers:
                watcher.start()
            for watcher in watchers:
                watcher.join()
            # Measured from when the owner's status said finished (polled every 5 ms).
            polled.append(1000 * (seen["other"] - seen["own"]))
            streamed.append(1000 * (seen["other-sse"] - seen["own"]))
            own_streamed.append(1000 * (seen["own-sse"] - seen["own"]))
    return {
        "samples": LATENCY_SAMPLES,
        "status_ms": {"median": statistics.median(polled), "max": max(polled)},
        "events_ms": {"median": statistics.median(streamed), "max": max(streamed)},
        "own_events_ms": {"median": statistics.median(own_streamed), "max": max(own_streamed)},
    }


def _all_creates(bases: list[str], names: list[str], auth: dict[str, str]) -> float:
    """Submit a create of every target at once, spread over `bases`; seconds until all end."""
    with httpx.Client(headers=auth, timeout=120) as client:
        started = time.perf_counter()
        ids = []
        for i, name in enumerate(names):
            base = bases[i % len(bases)]
            answer = client.post(f"{base}/api/backup/create?async=true&target={name}")
            ids.append((base, answer.json()["job"]["id"]))
        for base, job_id in ids:
            while True:
                job = client.get(f"{base}/api/backup/jobs/{job_id}").json()["job"]
                if job["status"] not in ("queued", "running"):
                    assert job["status"] == "succeeded", job
                    break
                time.sleep(0.02)
        return time.perf_counter() - started


def measure_throughput(bases: list[str], names: list[str], auth: dict[str, str]) -> dict[str, Any]:
    spread, one = [], []
    for _ in range(RUNS):  # interleaved
        spread.append(_all_creates(bases, names, auth))
        one.append(_all_creates(bases[:1], names, auth))
    spread_s, one_s = statistics.median(spread), statistics.median(one)
    return {
        "creates": len(names),
        "three_instances_seconds": spread_s,
        "one_instance_seconds": one_s,
        "three_instances_per_minute": 60 * len(names) / spread_s,
        "one_instance_per_minute": 60 * len(names) / one_s,
    }


def render(r: dict[str, Any], major: int) -> str:
    lat, thr = r["latency"], r["throughput"]
    return f"""# Benchmarks: several instances

Generated by `make bench` (`bench/instances.py`) on {os.cpu_count()} cores, PostgreSQL
{major}: {INSTANCES} `pgkeep serve` processes, one SeaweedFS store, one control database,
all on this machine.

## Seeing another instance's job

A create started on one instance, watched at once on it and on another: how much
later than the owning instance's own status (polled every 5 ms) each view saw the
job finished ({lat["samples"]} jobs; below zero is within the polling's granularity).

| | median | max |
|---|---|---|
| another instance, `GET /api/backup/jobs/{{id}}` (polled every 5 ms) | {lat["status_ms"]["median"]:.0f} ms | {lat["status_ms"]["max"]:.0f} ms |
| another instance, server-sent events (`end` event) | {lat["events_ms"]["median"]:.0f} ms | {lat["events_ms"]["max"]:.0f} ms |
| the owning instance, server-sent events (for reference) | {lat["own_events_ms"]["median"]:.0f} ms | {lat["own_events_ms"]["max"]:.0f} ms |

A finished job is written to the control database before it is reported anywhere,
so a status read on another instance lags by a round trip at most. An event
stream checks the job every 0.5 s on any instance (on another one, in the control
database), so its `end` event comes up to 0.5 s after the job ends there too.

## Creates per minute

{thr["creates"]} small databases, a create of each submitted at once; median of {RUNS}
interleaved runs. `PGKEEP_MAX_CONCURRENT_DUMPS=2` counts across instances.

| | seconds | creates per minute |
|---|---|---|
| spread over {INSTANCES} instances | {thr["three_instances_seconds"]:.1f} | {thr["three_instances_per_minute"]:.0f} |
| all on one instance | {thr["one_instance_seconds"]:.1f} | {thr["one_instance_per_minute"]:.0f} |

A queued job asks the control database for a slot every 0.25 s, so a slot freed on
one instance is taken by a job waiting on another within that.
"""


def main() -> int:
    bins = available_bin_dirs()
    major = max(bins)
    work = Path(tempfile.mkdtemp(prefix="pgkeep-bench-instances-"))
    try:
        with ThrowawayCluster(bins[major]) as cluster, ThrowawayS3() as s3:
            bucket = s3.create_bucket("instances-" + secrets.token_hex(3))
            names = _databases(cluster)
            config = _config(cluster, work, bucket, names)
            auth = {"Authorization": f"Bearer {token()}"}
            with _instances(config, s3, work) as bases:
                result = {
                    "latency": measure_latency(bases, auth),
                    "throughput": measure_throughput(bases, names, auth),
                }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    (ROOT / "docs" / "benchmarks-instances.md").write_text(render(result, major))
    (ROOT / "docs" / "benchmarks-instances.json").write_text(json.dumps(result, indent=2))
    print(render(result, major))
    return 0


if __name__ == "__main__":
    sys.exit(main())
