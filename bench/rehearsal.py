"""The cost of an upgrade rehearsal (issue 23): docs/benchmarks-rehearsal.md.

A verify with restore of a pgbench database on the second-newest major here, against the
same verify with one rehearsal into the newest (the next major), plain and custom; the
rehearsal reads the backup once more and restores it whole, as the loader, without
owners or grants."""

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
from pgkeep.core.events import Actor
from pgkeep.core.models import BackupOptions, DumpFormat
from pgkeep.throwaway.cluster import ThrowawayCluster, available_bin_dirs

ROOT = Path(__file__).parents[1]
SCALE = int(os.environ.get("BENCH_REHEARSAL_SCALE", "10"))
RUNS = int(os.environ.get("BENCH_REHEARSAL_RUNS", "3"))
ACTOR = Actor("bench", "bench")
SECRET = "b" + "enchmark-k9Qw7ZpL2mXv8RbN4cYd6HfJ1sTgUaEo"


def verifies(
    source: ThrowawayCluster, db: str, work: Path, form: DumpFormat, rehearsal: str | None
) -> tuple[list[float], dict[str, Any]]:
    """RUNS verifies with restore of one backup; their times and the last one's rehearsals."""
    key = f"{form}-{rehearsal is not None}"
    settings = load_settings(
        database_url=source.url(db),
        jwt_secret=SECRET,
        backup_dir=work / f"backups-{key}",
        pg_bin_dir=source.bin_dir,
        state_dir=work / f"state-{key}",
        rehearsal_database_urls=json.dumps([rehearsal] if rehearsal else []),
    )
    service = wiring.build(settings).service()
    name = service.creating.create(BackupOptions(form), ACTOR).name
    times, last = [], None
    for _ in range(RUNS):
        started = time.perf_counter()
        last = service.proving.verify(name, restore=True, actor=ACTOR)
        times.append(time.perf_counter() - started)
    if last is None or not last.verified:
        raise SystemExit(f"the verify did not pass: {last}")
    said = [{"major": r.major, "ok": r.ok, "details": r.details} for r in last.rehearsals]
    return times, {"sizeBytes": service.catalog.get(name).size_bytes, "rehearsals": said}


def render(result: dict[str, Any]) -> str:
    lines = [
        "# Benchmarks: upgrade rehearsals",
        "",
        f"Written by `make bench` (bench/rehearsal.py) on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC;",
        f"a pgbench database (scale {result['scale']}) on PostgreSQL {result['source']}, its",
        "backup verified with `restore: true` on the same server, without and with one",
        f"rehearsal into PostgreSQL {result['next']} (another server on the same machine);",
        f"median of {RUNS} verifies each.",
        "",
        "| format | backup | verify with restore | with one rehearsal | a rehearsal costs |",
        "|---|---:|---:|---:|---:|",
    ]
    for form, row in result["formats"].items():
        plain, rehearsed = row["plain_median_s"], row["rehearsal_median_s"]
        lines.append(
            f"| {form} | {row['sizeBytes'] / 1e6:.1f} MB | {plain:.2f} s | {rehearsed:.2f} s "
            f"| {rehearsed - plain:+.2f} s ({(rehearsed / plain - 1) * 100:+.0f}%) |"
        )
    said = "; ".join(
        f"{form}: {r['details']}" for form, row in result["formats"].items() for r in row["said"]
    )
    lines += [
        "",
        f"What the rehearsals said: {said}.",
        "",
        "A rehearsal is one more read of the backup and one more whole restore (as the",
        "loader, rows proven, the scratch database dropped), on another server: budget about",
        "one test restore per rehearsal server, run after the verify's own, one at a time.",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    bins = available_bin_dirs()
    majors = sorted(bins)
    if len(majors) < 2:
        print("rehearsal bench skipped: one PostgreSQL major only")
        return 0
    source_major, next_major = majors[-2], majors[-1]
    work = Path(tempfile.mkdtemp(prefix="pgkeep-bench-rehearsal-"))
    result: dict[str, Any] = {"scale": SCALE, "source": source_major, "next": next_major}
    result["formats"] = {}
    try:
        with (
            ThrowawayCluster(bins[source_major]) as source,
            ThrowawayCluster(bins[next_major]) as upgraded,
        ):
            db = pgbench(source, SCALE)
            for form in (DumpFormat.PLAIN, DumpFormat.CUSTOM):
                plain, _ = verifies(source, db, work, form, None)
                rehearsed, said = verifies(source, db, work, form, upgraded.url("postgres"))
                result["formats"][str(form)] = {
                    "sizeBytes": said["sizeBytes"],
                    "plain_median_s": statistics.median(plain),
                    "rehearsal_median_s": statistics.median(rehearsed),
                    "said": said["rehearsals"],
                }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    (ROOT / "docs" / "benchmarks-rehearsal.md").write_text(render(result))
    (ROOT / "docs" / "benchmarks-rehearsal.json").write_text(json.dumps(result, indent=2))
    print(render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
