"""Slow readers against a real `pgkeep serve`: each costs little, and /healthz stays fast.

Seen on the previous main: 300 downloads read at 4 KiB/s took the server from 93 to
465 MiB RSS (about 1.2 MiB each, never returned) and /healthz to 5.8 s. Measured with
bench/readers.py: 1.2 to 1.4 MiB each before, 0.05 MiB each now (`http.zerocopy`).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx

from pgkeep.config import Settings
from pgkeep.throwaway.cluster import ThrowawayCluster
from tests.conftest import plant_backup
from tests.test_serve_process import _token, server_env, start_server

READERS = 100
MIB = 1024 * 1024
DATA = os.urandom(MIB) * 16


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def _descriptors(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


def _slow_reader(address: tuple[str, int], request: bytes) -> socket.socket:
    """A download whose client takes 4 KiB at a time (its receive window is that small)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(address)
    sock.sendall(request)
    sock.setblocking(False)
    return sock


def _trickle(readers: list[socket.socket], seconds: float) -> None:
    """Read 4 KiB a second from each reader, for `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for sock in readers:
            with contextlib.suppress(BlockingIOError):
                sock.recv(4096)
        time.sleep(1)


def _body(sock: socket.socket) -> bytes:
    """The body of the response to a download, read at full speed from now on."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    sock.setblocking(True)
    sock.settimeout(30)
    received = bytearray()
    while (data := sock.recv(1 << 20)) and len(received.partition(b"\r\n\r\n")[2]) < len(DATA):
        received += data
    return bytes(received.partition(b"\r\n\r\n")[2])


def test_slow_readers_cost_little_and_healthz_stays_fast(
    make_settings: Callable[..., Settings],
    database: str,
    backup_dir: Path,
    cluster: ThrowawayCluster,
    tmp_path: Path,
) -> None:
    name = plant_backup(make_settings(), datetime(2024, 1, 1, tzinfo=UTC), DATA)
    log = tmp_path / "server.log"
    proc, base = start_server(server_env(database, backup_dir, cluster), log)
    host, port = base.removeprefix("http://").split(":")
    path = f"/api/backup/download/{name}?token={_token()}"
    readers: list[socket.socket] = []
    try:
        with (backup_dir / name).open("rb") as planted:  # cold: read into the cache first
            os.posix_fadvise(planted.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
        whole = httpx.get(base + path, timeout=30)  # a fast download, whole and right
        assert hashlib.sha256(whole.content).digest() == hashlib.sha256(DATA).digest()
        part = httpx.get(base + path, headers={"Range": f"bytes={MIB - 5}-{9 * MIB + 4}"})
        assert (part.status_code, part.content) == (206, DATA[MIB - 5 : 9 * MIB + 5])
        before, descriptors = _rss_mib(proc.pid), _descriptors(proc.pid)
        request = f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
        readers = [_slow_reader((host, int(port)), request) for _ in range(READERS)]
        _trickle(readers[1:], 5)  # the first reads nothing at all meanwhile
        grown = _rss_mib(proc.pid) - before
        for _ in range(5):
            started = time.monotonic()
            assert httpx.get(f"{base}/healthz", timeout=5).status_code == 200
            assert time.monotonic() - started < 1
        # Chunks cost about 1.2 MiB a reader (121 MiB here); now about 0.06.
        assert grown < 32, f"{READERS} slow readers added {grown:.0f} MiB"
        # Copied while the socket had room, then sent from the page cache: every byte right.
        assert _body(readers[0]) == DATA
        for sock in readers:  # gone mid-file: each backup is closed, nothing logged
            sock.close()
        deadline = time.monotonic() + 10
        while _descriptors(proc.pid) > descriptors and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _descriptors(proc.pid) <= descriptors
    finally:
        for sock in readers:
            sock.close()
        proc.terminate()
        proc.wait(timeout=30)
    assert "Traceback" not in log.read_text(), log.read_text()[-3000:]
