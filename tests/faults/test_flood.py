"""One unauthenticated client must not take a real `pgkeep serve` down (bounded counts and times).

Seen on the previous main: ~20,000 half-sent requests exhausted file descriptors, /healthz
timed out and each refused accept logged a line (194 MB in 45 s); eight 100 MB bodies
without a token were read and parsed before authentication (RSS 84 MB to 1.3 GB).
"""

from __future__ import annotations

import selectors
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import httpx

from pgkeep.throwaway.cluster import ThrowawayCluster
from tests.test_serve_process import server_env, start_server

FLOOD = 1500  # three times the server's descriptor limit below
MAX_FILES = 512


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _flood(host: str, port: int, count: int, seconds: float = 10) -> list[socket.socket]:
    """`count` connections, each sending a request's first lines and never the blank line.

    Connects are non-blocking: the server's accept queue is short on purpose, so a blocking
    connect would wait out SYN retries; the flood goes on while the server drains it.
    """
    waiting = selectors.DefaultSelector()
    for _ in range(count):
        sock = socket.socket()
        sock.setblocking(False)
        sock.connect_ex((host, port))
        waiting.register(sock, selectors.EVENT_WRITE)
    sent: list[socket.socket] = []
    deadline = time.monotonic() + seconds
    while waiting.get_map() and time.monotonic() < deadline:
        for key, _ in waiting.select(0.5):
            sock = cast(socket.socket, key.fileobj)
            waiting.unregister(sock)
            try:
                sock.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
                sent.append(sock)
            except OSError:  # refused or reset: the server is shedding the flood
                sock.close()
    for key in list(waiting.get_map().values()):
        cast(socket.socket, key.fileobj).close()
    waiting.close()
    return sent


def _wait_closed(socks: list[socket.socket], seconds: float, enough: int | None = None) -> int:
    """Wait until the server has closed (FIN) or aborted (RST) them, or `enough` of them;
    how many it closed."""
    watching = selectors.DefaultSelector()
    for sock in socks:
        watching.register(sock, selectors.EVENT_READ)
    closed = 0
    deadline = time.monotonic() + seconds
    wanted = len(socks) if enough is None else enough
    while watching.get_map() and closed < wanted and time.monotonic() < deadline:
        for key, _ in watching.select(0.5):
            sock = cast(socket.socket, key.fileobj)
            watching.unregister(sock)
            try:
                closed += sock.recv(1) == b""
            except ConnectionResetError:
                closed += 1
    watching.close()
    return closed


def _descriptors(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


def test_half_sent_requests_cannot_starve_the_server(
    database: str, backup_dir: Path, cluster: ThrowawayCluster, tmp_path: Path
) -> None:
    env = server_env(database, backup_dir, cluster) | {"PGKEEP_HEADER_TIMEOUT_SECONDS": "2"}
    log = tmp_path / "server.log"
    proc, base = start_server(env, log, max_files=MAX_FILES)
    host, port = base.removeprefix("http://").split(":")
    held: list[socket.socket] = []
    try:
        started = time.monotonic()
        held = _flood(host, int(port), FLOOD)
        flood_seconds = time.monotonic() - started
        assert len(held) > MAX_FILES
        assert _descriptors(proc.pid) < MAX_FILES - 64
        # A client that sends its request promptly is served while the flood is held open.
        for _ in range(5):
            answer = httpx.get(f"{base}/healthz", timeout=5)
            assert answer.status_code == 200
        assert proc.poll() is None
        assert _descriptors(proc.pid) < MAX_FILES - 64
        # Connections the server accepted and evicted, timed out, or refused at the cap, were
        # closed. Not all: a client whose handshake's last ACK the kernel dropped on a full
        # accept queue believes it is connected until SYN-ACK retries end (measured: ~200 of
        # 1500 still open after 30 s), which no server code sees. Waited for, not timed: a
        # loaded CI machine closed 537 within the first second.
        assert _wait_closed(held, 30, enough=FLOOD // 2 + 1) > FLOOD // 2
    finally:
        for sock in held:
            sock.close()
        proc.terminate()
        proc.wait(timeout=30)
    size = log.stat().st_size
    assert size < 100_000, f"{size} bytes of log for {FLOOD} connections in {flood_seconds:.1f}s"
    assert "Too many open files" not in log.read_text(), log.read_text()[-3000:]


def test_requests_not_sent_whole_in_time_are_closed(
    database: str, backup_dir: Path, cluster: ThrowawayCluster, tmp_path: Path
) -> None:
    env = server_env(database, backup_dir, cluster) | {"PGKEEP_HEADER_TIMEOUT_SECONDS": "1"}
    proc, base = start_server(env, tmp_path / "server.log")
    host, port = base.removeprefix("http://").split(":")
    slow_headers: list[socket.socket] = []
    slow_body: list[socket.socket] = []
    try:
        slow_headers = _flood(host, int(port), 20)
        for _ in range(5):
            sock = socket.create_connection((host, int(port)))
            sock.sendall(
                b"POST /api/backup/create HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n{"
            )
            slow_body.append(sock)
        started = time.monotonic()
        assert _wait_closed(slow_headers + slow_body, 10) == 25
        assert 0.8 < time.monotonic() - started < 5
        assert httpx.get(f"{base}/healthz", timeout=5).status_code == 200
    finally:
        for sock in slow_headers + slow_body:
            sock.close()
        proc.terminate()
        proc.wait(timeout=30)


def test_large_bodies_are_refused_before_they_are_read(
    database: str, backup_dir: Path, cluster: ThrowawayCluster, tmp_path: Path
) -> None:
    proc, base = start_server(server_env(database, backup_dir, cluster), tmp_path / "server.log")
    host, port = base.removeprefix("http://").split(":")
    try:
        before = _rss_kib(proc.pid)
        for _ in range(8):  # announced as 100 MB, nothing sent: refused at once
            with socket.create_connection((host, int(port)), timeout=5) as sock:
                sock.sendall(
                    b"POST /api/backup/create HTTP/1.1\r\nHost: x\r\n"
                    b"Content-Type: application/json\r\nContent-Length: 104857600\r\n\r\n"
                )
                head = sock.recv(4096)
                assert head.startswith(b"HTTP/1.1 413"), head[:100]

        def chunks() -> Iterator[bytes]:
            for _ in range(64):
                yield b"[" * 65536  # 4 MiB of chunked JSON, never parsed

        response = httpx.post(
            f"{base}/api/backup/create",
            content=chunks(),
            timeout=30,
        )
        assert response.status_code == 413
        assert response.json()["error"] == "Request body too large"
        after = _rss_kib(proc.pid)
        assert after - before < 50_000, (before, after)
        assert httpx.get(f"{base}/healthz").status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=30)
