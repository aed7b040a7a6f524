"""What the bench scripts share: a served pgkeep, interleaved timing, peak RSS, busy CPU."""

from __future__ import annotations

import os
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from pgkeep.throwaway.cluster import ThrowawayCluster, _free_port

RUNS = int(os.environ.get("BENCH_RUNS", "5"))
SECRET = "bench-" + "k9Qw7ZpL2mXv8RbN4cYd6HfJ1sTgUaEo-x"

Run = tuple[Callable[[], object], Callable[[], object]]  # (timed, untimed cleanup)
CPU: dict[str, float] = {}  # contender → median machine CPU seconds, from the last `interleaved`


def token() -> str:
    return subprocess.run(
        [sys.executable, "-m", "pgkeep", "token", "--sub", "bench", "--ttl", "1d"],
        env={**os.environ, "PGKEEP_JWT_SECRET": SECRET},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


@contextmanager
def served(
    cluster: ThrowawayCluster, db: str, backup_dir: Path, env: dict[str, str]
) -> Iterator[tuple[str, int]]:
    """`pgkeep serve` on `db` with `env` added (PGKEEP_* and AWS_* from outside dropped);
    its base URL and pid."""
    port = _free_port()
    full = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("PGKEEP_", "AWS_"))},
        "PGKEEP_DATABASE_URL": cluster.url(db),
        "PGKEEP_JWT_SECRET": SECRET,
        "PGKEEP_BACKUP_DIR": str(backup_dir),
        "PGKEEP_PG_BIN_DIR": str(cluster.bin_dir),
        "PGKEEP_RETENTION_DAYS": "0",
        "PGKEEP_LOG_LEVEL": "WARNING",
        **env,
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "pgkeep", "serve", "--port", str(port)],
        env=full,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                httpx.get(f"{base}/healthz")
                break
            except httpx.TransportError:
                time.sleep(0.1)
        yield base, proc.pid
    finally:
        proc.terminate()
        proc.wait()


def busy_seconds() -> float:
    """CPU time the whole machine has spent busy (every process, every core)."""
    fields = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def steal_share(work: Callable[[], object]) -> tuple[object, float]:
    """`work()`'s result, and the share of this VM's CPU time the hypervisor took meanwhile
    (steal): above a few percent, wall-clock ratios between runs swing by that much."""

    def fields() -> list[int]:
        return [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]

    before = fields()
    result = work()
    after = fields()
    total = sum(after[:8]) - sum(before[:8])
    return result, (after[7] - before[7]) / total if total else 0.0


def interleaved(contenders: dict[str, Run], runs: int = RUNS) -> dict[str, float]:
    """Median seconds of each, in a fresh shuffled order every round (and, in CPU, the
    median CPU seconds the machine spent meanwhile)."""
    times: dict[str, list[float]] = {name: [] for name in contenders}
    cpu: dict[str, list[float]] = {name: [] for name in contenders}
    order = random.Random(0)  # noqa: S311 (an order, not a secret)
    for _ in range(runs):
        names = list(contenders)
        order.shuffle(names)
        for name in names:
            timed, cleanup = contenders[name]
            busy = busy_seconds()
            started = time.perf_counter()
            timed()
            times[name].append(time.perf_counter() - started)
            cpu[name].append(busy_seconds() - busy)
            cleanup()
    CPU.update({name: statistics.median(values) for name, values in cpu.items()})
    return {name: statistics.median(values) for name, values in times.items()}


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def pgbench(cluster: ThrowawayCluster, scale: int) -> str:
    """A pgbench database at `scale`; its name."""
    db = f"pgbench_{scale}"
    cluster.create_database(db)
    print(f"building {db} (pgbench -i -s {scale})…", flush=True)
    subprocess.run(
        [
            str(cluster.bin_dir / "pgbench"),
            *("-i", "-q", "-s", str(scale)),
            *("-h", "127.0.0.1", "-p", str(cluster.port), "-U", "postgres", db),
        ],
        env={**os.environ, "PGPASSWORD": cluster.password},
        check=True,
        capture_output=True,
    )
    return db
