"""Attacks on the wire, against a real `pgkeep serve` over TCP: what h11 alone would allow."""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pgkeep.throwaway.cluster import ThrowawayCluster
from tests.test_serve_process import server_env, serving

STATUS = re.compile(rb"HTTP/1\.1 (\d{3}) ")
SMUGGLED = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"


@pytest.fixture
def address(
    database: str, backup_dir: Path, cluster: ThrowawayCluster, tmp_path: Path
) -> Iterator[tuple[str, int]]:
    with serving(server_env(database, backup_dir, cluster), tmp_path / "server.log") as base:
        host, port = base.removeprefix("http://").split(":")
        yield host, int(port)


def _exchange(address: tuple[str, int], request: bytes, seconds: float = 3) -> tuple[bytes, bool]:
    """Send `request` whole; everything the server answers within `seconds`, and whether it
    closed the connection by then."""
    with socket.create_connection(address) as sock:
        sock.sendall(request)
        received = b""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                data = sock.recv(65536)
            except TimeoutError:
                break
            except ConnectionResetError:
                return received, True
            if not data:
                return received, True
            received += data
    return received, False


@pytest.mark.parametrize(
    "head",
    [
        b"POST /api/backup/create HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        b"Content-Length: %d\r\n\r\n",
        b"POST /api/backup/create HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n",
        b"POST /api/backup/create HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        b"Connection: keep-alive\r\nX-Length: %d\r\n\r\n",
    ],
    ids=["te-then-cl", "cl-then-te", "te-in-http-1.0"],
)
def test_ambiguous_framing_is_400_and_closes_the_connection(
    address: tuple[str, int], head: bytes
) -> None:
    """h11 framed such a request by Transfer-Encoding and kept the connection, so the
    request a Content-Length front end saw as this one's body was answered too."""
    body = b"0\r\n\r\n" + SMUGGLED  # one request to a front end that trusts Content-Length
    received, closed = _exchange(address, head % len(body) + body)
    assert [int(code) for code in STATUS.findall(received)] == [400], received
    assert closed, "the connection was kept open after an ambiguous request"
    answer = json.loads(received.split(b"\r\n\r\n", 1)[1])
    assert answer["error"] == "Invalid HTTP request"
    assert b"connection: close" in received.lower()


def test_pipelined_requests_are_still_answered_in_order(address: tuple[str, int]) -> None:
    received, closed = _exchange(address, SMUGGLED + SMUGGLED, seconds=1)
    assert [int(code) for code in STATUS.findall(received)] == [200, 200]
    assert not closed


def test_malformed_requests_get_the_error_body_and_never_their_own_bytes_back(
    address: tuple[str, int],
) -> None:
    # h11 says "illegal header line: bytearray(b'Authorization Bearer s3cret')"
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\nAuthorization Bearer s3cret\r\n\r\n"
    received, closed = _exchange(address, request + SMUGGLED)
    assert [int(code) for code in STATUS.findall(received)] == [400]
    assert closed
    assert json.loads(received.split(b"\r\n\r\n", 1)[1]) == {
        "error": "Invalid HTTP request",
        "details": "the request does not follow HTTP/1.1 syntax (RFC 9112)",
    }
    assert b"s3cret" not in received
