"""The cost of drift alarms (issue 23): docs/benchmarks-drift.md.

A create with drift alarms on against the same create with them off, on a pgbench
database with earlier backups already in the store (the comparison lists them and reads
the newest good one's manifest); and the pure comparison of two manifests of 10,000
tables each."""

from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from common import pgbench

from pgkeep import wiring
from pgkeep.config import load_settings
from pgkeep.core import drift
from pgkeep.core.events import Actor
from pgkeep.core.models import Compression, DumpFormat, Manifest
from pgkeep.throwaway.cluster import ThrowawayCluster, available_bin_dirs

ROOT = Path(__file__).parents[1]
SCALE = int(os.environ.get("BENCH_DRIFT_SCALE", "10"))
EARLIER = int(os.environ.get("BENCH_DRIFT_EARLIER", "30"))
RUNS = 5
ACTOR = Actor("bench", "bench")


def creates(cluster: ThrowawayCluster, work: Path, db: str, alarms: bool) -> list[float]:
    settings = load_settings(
        database_url=cluster.url(db),
        jwt_secret="b" + "enchmark-k9Qw7ZpL2mXv8RbN4cYd6HfJ1sTgUaEo",
        backup_dir=work / f"backups-{alarms}",
        pg_bin_dir=cluster.bin_dir,
        state_dir=work / f"state-{alarms}",
        retention_days=0,
        drift_alarms=alarms,
    )
    service = wiring.build(settings).service()
    for _ in range(EARLIER):
        service.creating.create(None, ACTOR)
    times = []
    for _ in range(RUNS):
        started = time.perf_counter()
        service.creating.create(None, ACTOR)
        times.append(time.perf_counter() - started)
    return times


def pure(tables: int = 10_000) -> float:
    at = datetime.now(UTC)
    counts = {f"public.t{i}": 5000 for i in range(tables)}
    before = Manifest(
        "a.sql",
        DumpFormat.PLAIN,
        Compression.NONE,
        0,
        10**9,
        "0" * 64,
        "db",
        "18",
        "18",
        at,
        at,
        "bench",
        counts,
    )
    after = {name: (100 if i % 10 == 0 else 5000) for i, name in enumerate(counts)}
    started = time.perf_counter()
    for _ in range(RUNS):
        drift.compare(before, after, 10**9, True, drift.DriftPolicy())
    return (time.perf_counter() - started) / RUNS


def render(result: dict[str, Any], major: int) -> str:
    on, off = result["on_median_s"], result["off_median_s"]
    return "\n".join(
        [
            "# Benchmarks: drift alarms",
            "",
            f"Written by `make bench` (bench/drift.py) on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC;",
            f"PostgreSQL {major}, pgbench scale {result['scale']}, {result['earlier']} earlier",
            f"backups in the store; median of {RUNS} creates each (plain, uncompressed).",
            "",
            "| | create |",
            "|---|---:|",
            f"| drift alarms off | {off:.3f} s |",
            f"| drift alarms on | {on:.3f} s |",
            f"| difference | {on - off:+.3f} s ({(on / off - 1) * 100:+.1f}%) |",
            "",
            f"The comparison alone, two manifests of 10,000 tables: {result['pure_ms']:.2f} ms.",
            "",
        ]
    )


def main() -> int:
    bins = available_bin_dirs()
    major = max(bins)
    work = Path(tempfile.mkdtemp(prefix="pgkeep-bench-drift-"))
    try:
        with ThrowawayCluster(bins[major]) as cluster:
            db = pgbench(cluster, SCALE)
            off = creates(cluster, work, db, alarms=False)
            on = creates(cluster, work, db, alarms=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result = {
        "scale": SCALE,
        "earlier": EARLIER,
        "off_median_s": statistics.median(off),
        "on_median_s": statistics.median(on),
        "pure_ms": pure() * 1000,
    }
    (ROOT / "docs" / "benchmarks-drift.md").write_text(render(result, major))
    (ROOT / "docs" / "benchmarks-drift.json").write_text(json.dumps(result, indent=2))
    print(render(result, major))
    return 0


if __name__ == "__main__":
    sys.exit(main())
