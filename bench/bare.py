"""Reference servers for the download benchmark: the least a server can do to send a file.

Each answers any request with a status line and the whole file, so what separates
pgkeep from them is HTTP, routing and authorization; what separates them from
`cat` is loopback TCP and the client.

- `sendfile`: one `os.sendfile()` loop, no copy in user space.
- `loop`: `pread` 1 MiB, `sendall` it; pgkeep's chunk size on a blocking socket.
- `asgi`: the same 1 MiB chunks from a minimal ASGI app on the uvicorn pgkeep runs on.

Run as `python bench/bare.py asgi FILE PORT` for the last; the others are threads.
"""

from __future__ import annotations

import os
import socket
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CHUNK = 1024 * 1024


@contextmanager
def socket_server(path: Path, *, sendfile: bool) -> Iterator[str]:
    """A threaded TCP server sending `path` to every request; yields its URL."""
    size = path.stat().st_size

    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            self.request.recv(65536)
            head = f"HTTP/1.1 200 OK\r\nContent-Length: {size}\r\nConnection: close\r\n\r\n"
            self.request.sendall(head.encode())
            fd = os.open(path, os.O_RDONLY)
            try:
                offset = 0
                while offset < size:
                    if sendfile:
                        offset += os.sendfile(self.request.fileno(), fd, offset, size - offset)
                    else:
                        chunk = os.pread(fd, CHUNK, offset)
                        self.request.sendall(chunk)
                        offset += len(chunk)
            finally:
                os.close(fd)

    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}/"
        finally:
            server.shutdown()


@contextmanager
def asgi_server(path: Path, port: int) -> Iterator[str]:
    """`asgi_app` under uvicorn in its own process, as pgkeep runs; yields its URL."""
    command = [sys.executable, __file__, "asgi", str(path), str(port)]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(300):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/"
    finally:
        proc.terminate()
        proc.wait()


Scope = MutableMapping[str, Any]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


def asgi_app(path: Path) -> Callable[[Scope, Any, Send], Awaitable[None]]:
    async def app(scope: Scope, receive: Any, send: Send) -> None:
        if scope["type"] != "http":
            return
        fd = os.open(path, os.O_RDONLY)
        try:
            size = os.fstat(fd).st_size
            length = str(size).encode()
            start = {"type": "http.response.start", "status": 200}
            await send(start | {"headers": [(b"content-length", length)]})
            offset = 0
            while offset < size:
                chunk = os.pread(fd, CHUNK, offset)
                offset += len(chunk)
                body = {"type": "http.response.body", "body": chunk}
                await send(body | {"more_body": offset < size})
        finally:
            os.close(fd)

    return app


if __name__ == "__main__":
    import uvicorn

    _, kind, file, port = sys.argv
    assert kind == "asgi"
    uvicorn.run(
        asgi_app(Path(file)), host="127.0.0.1", port=int(port), log_config=None, access_log=False
    )
