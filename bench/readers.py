"""Slow readers against a real `pgkeep serve`: what each costs in RSS, and /healthz meanwhile.

Plants a backup of BENCH_READER_MB (default 512) MiB, then measures:

- a fast download of it from the page cache, to `curl -o /dev/null` (median of 5);
- the server's RSS before and after BENCH_READERS (default 300) clients that each
  set SO_RCVBUF to 4 KiB and read 4 KiB a second, and /healthz latency while they do;
- open descriptors after 50 requests with a 5,000-digit Range.

Run as `python bench/readers.py` (with pgkeep and tests importable); prints one JSON line.
Not part of CI.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
from common import SECRET, served, token
from tests.conftest import plant_backup

from pgkeep.config import load_settings
from pgkeep.throwaway.cluster import ThrowawayCluster, available_bin_dirs

SIZE_MB = int(os.environ.get("BENCH_READER_MB", "512"))
READERS = int(os.environ.get("BENCH_READERS", "300"))
SETTLE_SECONDS = float(os.environ.get("BENCH_SETTLE_SECONDS", "15"))


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def slow_reader(port: int, request: bytes) -> socket.socket:
    """A connection that asked for a download and reads nothing yet, its window 4 KiB."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.sendall(request)
    sock.setblocking(False)
    return sock


def trickle(sockets: list[socket.socket], stop: threading.Event) -> None:
    """Read 4 KiB a second from each socket."""
    while not stop.wait(1.0):
        for sock in sockets:
            with contextlib.suppress(OSError):  # nothing there yet, or closed
                sock.recv(4096)


def healthz_ms(base: str, samples: int = 20) -> list[float]:
    times = []
    with httpx.Client(timeout=30) as client:
        for _ in range(samples):
            started = time.perf_counter()
            client.get(f"{base}/healthz")
            times.append((time.perf_counter() - started) * 1000)
            time.sleep(0.1)
    return times


def curl_mb_s(url: str) -> float:
    out = subprocess.run(
        ["curl", "-s", "-o", "/dev/null", "-w", "%{speed_download}", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return float(out) / 1e6


def descriptors(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


def main() -> None:
    bin_dir = available_bin_dirs()[max(available_bin_dirs())]
    with ThrowawayCluster(bin_dir) as cluster, tempfile.TemporaryDirectory() as work:
        cluster.create_database("readers")
        backup_dir = Path(work) / "backups"
        settings = load_settings(
            database_url=cluster.url("readers"),
            jwt_secret=SECRET,
            backup_dir=backup_dir,
            pg_bin_dir=bin_dir,
        )
        block = os.urandom(1024 * 1024)
        name = plant_backup(settings, datetime(2024, 1, 1, tzinfo=UTC), block * SIZE_MB)
        with served(cluster, "readers", backup_dir, {}) as (base, pid):
            ticket = token()
            url = f"{base}/api/backup/download/{name}?token={ticket}"
            subprocess.run(["cat", str(backup_dir / name)], stdout=subprocess.DEVNULL, check=True)
            speeds = [curl_mb_s(url) for _ in range(5)]
            port = int(base.rsplit(":", 1)[1])
            huge = "bytes=" + "9" * 5000 + "-"
            fds_before = descriptors(pid)
            statuses = set()
            with httpx.Client(timeout=30) as client:
                for _ in range(50):  # the answer's status; its body, if any, left unread
                    with client.stream("GET", url, headers={"Range": huge}) as response:
                        statuses.add(response.status_code)
            fds_after = descriptors(pid)
            healthz_idle = healthz_ms(base)
            before = rss_mb(pid)
            path = f"/api/backup/download/{name}?token={ticket}"
            request = f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode()
            readers = [slow_reader(port, request) for _ in range(READERS)]
            stop = threading.Event()
            thread = threading.Thread(target=trickle, args=(readers, stop), daemon=True)
            thread.start()
            time.sleep(SETTLE_SECONDS)
            during = rss_mb(pid)
            healthz_busy = healthz_ms(base)
            peak = rss_mb(pid)
            stop.set()
            for sock in readers:
                sock.close()
    print(
        json.dumps(
            {
                "fast_download_mb_s_median": round(statistics.median(speeds), 1),
                "fast_download_mb_s": [round(s, 1) for s in speeds],
                "huge_range_statuses": sorted(statuses),
                "descriptors_before_after_50_huge_ranges": [fds_before, fds_after],
                "readers": READERS,
                "rss_mb_before": round(before, 1),
                "rss_mb_with_readers": round(max(during, peak), 1),
                "rss_mb_per_reader": round((max(during, peak) - before) / READERS, 3),
                "healthz_ms_idle_median": round(statistics.median(healthz_idle), 1),
                "healthz_ms_busy_median": round(statistics.median(healthz_busy), 1),
                "healthz_ms_busy_max": round(max(healthz_busy), 1),
            }
        ),
        file=sys.stdout,
    )


if __name__ == "__main__":
    main()
