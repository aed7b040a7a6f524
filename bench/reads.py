"""Bytes read from the store per verify with restore, per format, against the backup's size
(issue 19: one reader; goal at most 1.1x): docs/benchmarks-reads.md.

Each backup is made by pgkeep's own core, then verified with a test restore; the bytes
read are counted where the store adapters read (`pgkeep_store_read_bytes_total`)."""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyrage
from common import pgbench

from pgkeep import wiring
from pgkeep.config import load_settings
from pgkeep.core.events import Actor
from pgkeep.core.models import BackupOptions, Compression, DumpFormat
from pgkeep.storage.meter import READS
from pgkeep.throwaway.cluster import ThrowawayCluster, available_bin_dirs

ROOT = Path(__file__).parents[1]
SCALES = [int(s) for s in os.environ.get("BENCH_READ_SCALES", "2 10").split()]
ACTOR = Actor("bench", "bench")
KINDS = [
    ("plain", DumpFormat.PLAIN, Compression.NONE, False),
    ("plain gzip", DumpFormat.PLAIN, Compression.GZIP, False),
    ("custom", DumpFormat.CUSTOM, Compression.NONE, False),
    ("custom, encrypted", DumpFormat.CUSTOM, Compression.NONE, True),
]


def measure(cluster: ThrowawayCluster, work: Path, db: str) -> list[dict[str, Any]]:
    identity = pyrage.x25519.Identity.generate()
    key = work / "identity.txt"
    key.write_text(str(identity) + "\n")
    rows = []
    for label, fmt, compression, encrypted in KINDS:
        extra: dict[str, object] = (
            {"age_recipients": (str(identity.to_public()),), "age_identity_file": key}
            if encrypted
            else {}
        )
        settings = load_settings(
            database_url=cluster.url(db),
            jwt_secret="b" + "enchmark-k9Qw7ZpL2mXv8RbN4cYd6HfJ1sTgUaEo",
            backup_dir=work / f"{db}-{label.replace(' ', '-').replace(',', '')}",
            pg_bin_dir=cluster.bin_dir,
            state_dir=work / "state",
            **extra,
        )
        service = wiring.build(settings).service()
        backup = service.creating.create(BackupOptions(fmt, compression), ACTOR)
        store = service.catalog.storage.where
        before = READS.totals().get(store, 0)
        verified = service.proving.verify(backup.name, restore=True, actor=ACTOR)
        read = READS.totals().get(store, 0) - before
        rows.append(
            {
                "database": db,
                "kind": label,
                "size_bytes": backup.size_bytes,
                "read_bytes": read,
                "ratio": round(read / backup.size_bytes, 4),
                "verified": verified.verified,
            }
        )
        print(rows[-1], flush=True)
    return rows


def render(rows: list[dict[str, Any]], major: int) -> str:
    out = [
        "# Benchmarks: bytes read per verify with restore",
        "",
        f"Written by `make bench` (bench/reads.py) on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC;",
        f"PostgreSQL {major}. A verify with `restore: true` reads the stored backup through one",
        "reader; the bytes read from the store (`pgkeep_store_read_bytes_total`) against the",
        "backup's size. Goal: at most 1.1x (the manifest is read too, a few KiB).",
        "",
        "| database | backup | size | read | read / size | verified |",
        "|---|---|---:|---:|---:|---|",
    ]
    for r in rows:
        out.append(
            f"| {r['database']} | {r['kind']} | {r['size_bytes'] / 2**20:.1f} MiB"
            f" | {r['read_bytes'] / 2**20:.1f} MiB | {r['ratio']:.3f}x | {r['verified']} |"
        )
    return "\n".join(out) + "\n"


def main() -> int:
    bins = available_bin_dirs()
    major = max(bins)
    work = Path(tempfile.mkdtemp(prefix="pgkeep-bench-reads-"))
    try:
        with ThrowawayCluster(bins[major]) as cluster:
            rows = [
                row for scale in SCALES for row in measure(cluster, work, pgbench(cluster, scale))
            ]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    (ROOT / "docs" / "benchmarks-reads.md").write_text(render(rows, major))
    (ROOT / "docs" / "benchmarks-reads.json").write_text(json.dumps(rows, indent=2))
    print(render(rows, major))
    return 0 if all(r["ratio"] <= 1.1 and r["verified"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
