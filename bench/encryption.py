"""`make bench`, encryption: what age costs on create and on restore, and peak RSS.

Two pgkeep servers on the same database, one with PGKEEP_AGE_RECIPIENTS (and an
identity file, to restore), one without; creates and restores through the API,
interleaved, median of BENCH_RUNS. Datasets: pgbench at BENCH_ENC_SCALES (default
"10 50"). Also the choice of library: pyrage in pgkeep's chain against the `age`
command in a pipe, on the same bytes. Writes docs/benchmarks-encryption.md and .json.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pyrage
from common import CPU, RUNS, interleaved, peak_rss_mb, pgbench, served, steal_share, token
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from pgkeep.core import encryption
from pgkeep.core.age_writer import AgeWriter
from pgkeep.throwaway.cluster import ThrowawayCluster, available_bin_dirs

ROOT = Path(__file__).parents[1]
SCALES = [int(s) for s in os.environ.get("BENCH_ENC_SCALES", "10 50").split()]


def measure(cluster: ThrowawayCluster, work: Path, db: str) -> dict[str, Any]:
    """Creates (uncompressed and zstd) and restores, with and without age, on one dataset."""
    identity = pyrage.x25519.Identity.generate()
    key = work / "key.txt"
    key.write_text(f"{identity}\n")
    key.chmod(0o600)
    sealed = {
        "PGKEEP_AGE_RECIPIENTS": str(identity.to_public()),
        "PGKEEP_AGE_IDENTITY_FILE": str(key),
    }
    http = httpx.Client(headers={"Authorization": f"Bearer {token()}"}, timeout=3600)
    row: dict[str, Any] = {"dataset": db}
    made: dict[str, list[str]] = {}

    def create(base: str, compression: str) -> Callable[[], None]:
        def go() -> None:
            response = http.post(f"{base}/api/backup/create", json={"compression": compression})
            response.raise_for_status()
            made.setdefault(base, []).append(response.json()["filename"])

        return go

    def drop(base: str) -> Callable[[], None]:
        def go() -> None:
            if len(made[base]) > 1:  # the newest stays: the restores use it
                http.delete(f"{base}/api/backup/{made[base].pop(0)}").raise_for_status()

        return go

    def restore(base: str) -> Callable[[], None]:
        def go() -> None:
            into = "r_" + secrets.token_hex(4)
            body = {"targetDatabase": into}
            http.post(f"{base}/api/backup/{made[base][-1]}/restore", json=body).raise_for_status()
            cluster.execute(f'DROP DATABASE "{into}" WITH (FORCE)')

        return go

    with (
        served(cluster, db, work / f"clear-{db}", {}) as (clear, clear_pid),
        served(cluster, db, work / f"age-{db}", sealed) as (aged, aged_pid),
    ):
        for compression in ("none", "zstd"):
            medians = interleaved(
                {
                    "clear": (create(clear, compression), drop(clear)),
                    "age": (create(aged, compression), drop(aged)),
                }
            )
            row[f"create_{compression}_clear_s"] = medians["clear"]
            row[f"create_{compression}_age_s"] = medians["age"]
            row[f"create_{compression}_ratio"] = medians["age"] / medians["clear"]
            row[f"create_{compression}_cpu_ratio"] = CPU["age"] / CPU["clear"]
        medians = interleaved(
            {"clear": (restore(clear), _nothing), "age": (restore(aged), _nothing)}
        )
        row["restore_clear_s"] = medians["clear"]
        row["restore_age_s"] = medians["age"]
        row["restore_ratio"] = medians["age"] / medians["clear"]
        row["peak_rss_clear_mb"] = peak_rss_mb(clear_pid)
        row["peak_rss_age_mb"] = peak_rss_mb(aged_pid)
    return row


def _nothing() -> None:
    pass


def _through(codec: Any, chunk: bytes, size: int) -> float:
    """MB/s of plaintext `codec` (process/finish) encrypts, fed `chunk` until `size`."""
    started = time.perf_counter()
    for _ in range(size // len(chunk)):
        codec.process(chunk)
    codec.finish()
    return size / (time.perf_counter() - started) / 1e6


def library_choice(work: Path, size: int = 512 << 20) -> dict[str, Any]:
    """pgkeep's writer (OpenSSL's ChaCha20-Poly1305) and pyrage (a thread fed chunk by
    chunk) in pgkeep's chain, against `age -r` in a pipe, on the same bytes; MB/s."""
    identity = pyrage.x25519.Identity.generate()
    recipient = str(identity.to_public())
    chunk = os.urandom(1 << 20)
    result: dict[str, Any] = {"bytes": size}
    keys = [pyrage.x25519.Recipient.from_str(recipient)]
    pump = encryption._Pump(lambda src, dst: pyrage.encrypt_io(src, dst, keys))
    result["pyrage_mb_s"] = _through(pump, chunk, size)
    result["pgkeep_mb_s"] = _through(AgeWriter((recipient,)), chunk, size)
    age = shutil.which("age")
    if age is not None:
        started = time.perf_counter()
        proc = subprocess.Popen(
            [age, "-r", recipient], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL
        )
        assert proc.stdin is not None
        for _ in range(size // len(chunk)):
            proc.stdin.write(chunk)
        proc.stdin.close()
        proc.wait()
        result["age_cli_mb_s"] = size / (time.perf_counter() - started) / 1e6
    # The cipher alone, as OpenSSL does it (through `cryptography`), 64 KiB at a time as age's
    # STREAM does: what a payload encryption written on it could reach.
    aead = ChaCha20Poly1305(ChaCha20Poly1305.generate_key())
    nonce = os.urandom(12)
    started = time.perf_counter()
    for _ in range(size // len(chunk)):
        for start in range(0, len(chunk), 65536):
            aead.encrypt(nonce, chunk[start : start + 65536], None)
    result["openssl_chacha_mb_s"] = size / (time.perf_counter() - started) / 1e6
    return result


def render(result: dict[str, Any], major: int) -> str:
    rows = result["datasets"]
    lib = result["library"]
    worst = max(max(r["create_none_ratio"], r["create_zstd_ratio"]) for r in rows)
    lines = [
        "# Benchmarks: encryption",
        "",
        f"Generated by `make bench` (`bench/encryption.py`) on {os.cpu_count()} cores, "
        f"PostgreSQL {major}. Two servers on the same database, one encrypting to an age "
        f"recipient; creates and restores through the API, interleaved, median of {RUNS}.",
        "",
        "| dataset | create none | + age | ratio | create zstd | + age | ratio "
        "| restore (zstd) | + age | ratio | peak RSS | + age |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['dataset']} | {r['create_none_clear_s']:.2f} s | {r['create_none_age_s']:.2f} s "
        f"| **{r['create_none_ratio']:.3f}** | {r['create_zstd_clear_s']:.2f} s "
        f"| {r['create_zstd_age_s']:.2f} s | **{r['create_zstd_ratio']:.3f}** "
        f"| {r['restore_clear_s']:.2f} s | {r['restore_age_s']:.2f} s "
        f"| **{r['restore_ratio']:.3f}** | {r['peak_rss_clear_mb']:.0f} MB "
        f"| {r['peak_rss_age_mb']:.0f} MB |"
        for r in rows
    ]
    lines += [
        "",
        f"- Create, goal ≤ 5% more: worst {100 * (worst - 1):+.1f}%: "
        + ("met." if worst <= 1.05 else "**missed**."),
        "- CPU the whole machine spent per create (pg_dump, PostgreSQL and pgkeep), with age "
        "against without, median: "
        + "; ".join(
            f"{r['dataset']} none {r['create_none_cpu_ratio']:.3f}, "
            f"zstd {r['create_zstd_cpu_ratio']:.3f}"
            for r in rows
        )
        + ". Less swayed by a neighbour than wall time, and what encryption adds either way.",
        f"- The hypervisor took {100 * result.get('steal', 0.0):.0f}% of this VM's CPU time "
        "(steal) during these runs: at more than a few percent, a ratio moves by about as "
        "much from one `make bench` to the next.",
        "",
        "## The library",
        "",
        f"{lib['bytes'] >> 20} MiB of random bytes encrypted to one recipient, in "
        f"pgkeep's chain: pgkeep's age writer (core/age_writer.py: the format's framing "
        f"over OpenSSL's ChaCha20-Poly1305, through `cryptography`) "
        f"{lib['pgkeep_mb_s']:.0f} MB/s; pyrage (the Rust `age` crate) fed chunk by chunk "
        f"on a thread {lib['pyrage_mb_s']:.0f} MB/s"
        + (
            f"; the `age` command (Go) in a pipe {lib['age_cli_mb_s']:.0f} MB/s."
            if "age_cli_mb_s" in lib
            else "."
        )
        + " The cipher alone (ChaCha20-Poly1305 in OpenSSL, 64 KiB at a time) runs at "
        f"{lib['openssl_chacha_mb_s']:.0f} MB/s. pgkeep writes with its own writer, on "
        "the dump's critical path, and reads with pyrage (restores are bound by "
        "PostgreSQL), so every file it writes is read back by another implementation in "
        "the tests, and by the `age` command.",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    bins = available_bin_dirs()
    major = max(bins)
    work = Path(tempfile.mkdtemp(prefix="pgkeep-bench-enc-"))
    try:
        with ThrowawayCluster(bins[major]) as cluster:
            datasets = [pgbench(cluster, scale) for scale in SCALES]
            rows, steal = steal_share(lambda: [measure(cluster, work, db) for db in datasets])
            result = {"datasets": rows, "steal": steal, "library": library_choice(work)}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    (ROOT / "docs" / "benchmarks-encryption.md").write_text(render(result, major))
    (ROOT / "docs" / "benchmarks-encryption.json").write_text(json.dumps(result, indent=2))
    print(render(result, major))
    return 0


if __name__ == "__main__":
    sys.exit(main())
