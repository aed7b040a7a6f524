"""Running PostgreSQL client tools: spawn without a shell, drain stderr, feed stdin."""

from __future__ import annotations

import collections
import contextlib
import fcntl
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO

from pgkeep.errors import ToolError
from pgkeep.postgres.spawner import Spawner

STDERR_TAIL_BYTES = 4096
# What a child may inherit from pgkeep's environment: nothing else (no PGKEEP_*, AWS_*,
# no stray PG* such as PGPASSFILE). Connection settings come from the adapter.
_INHERITED = ("PATH", "HOME", "TZ", "LANG", "LANGUAGE")
# libpq's own environment variables: the only ones an adapter may set for a child.
LIBPQ_VARIABLES = frozenset(
    {
        "PGPASSWORD",
        "PGPASSFILE",
        "PGSSLMODE",
        "PGSSLROOTCERT",
        "PGSSLCERT",
        "PGSSLKEY",
        "PGSSLCRL",
        "PGAPPNAME",
        "PGCONNECT_TIMEOUT",
        "PGOPTIONS",
        "PGTZ",
        "PGCLIENTENCODING",
    }
)
PIPE_BYTES = 1024 * 1024  # Linux's default pipe is 64 KiB; 1 MiB is the unprivileged maximum
_LIFELINE = str(Path(__file__).with_name("lifeline.py"))
# PostgreSQL 14 and later: a backend whose client has gone notices within this while it
# runs a query or waits for a lock, not only when it next writes to the socket. Older
# servers refuse the setting (FATAL: unrecognized configuration parameter).
CLIENT_CHECK_INTERVAL = "2s"
CLIENT_CHECK_SINCE = 14


class StderrTail:
    """Drains a child's stderr on a thread, keeping only its last few KiB."""

    def __init__(self, stream: IO[bytes], on_line: Callable[[str], None] | None = None) -> None:
        self._chunks: collections.deque[bytes] = collections.deque()
        self._size = 0
        self._on_line = on_line
        self._partial = b""
        self._thread = threading.Thread(target=self._drain, args=(stream,), daemon=True)
        self._thread.start()

    def _drain(self, stream: IO[bytes]) -> None:
        with stream:
            while chunk := stream.read1(4096):  # type: ignore[attr-defined]
                if self._on_line is not None:
                    self._lines(chunk)
                self._chunks.append(chunk)
                self._size += len(chunk)
                while self._size - len(self._chunks[0]) >= STDERR_TAIL_BYTES:
                    self._size -= len(self._chunks.popleft())

    def _lines(self, chunk: bytes) -> None:
        *lines, self._partial = (self._partial + chunk).split(b"\n")
        for line in lines:
            self._on_line(line.decode("utf-8", "replace"))  # type: ignore[misc]

    def join(self) -> None:
        self._thread.join(timeout=10)

    def text(self) -> str:
        data = b"".join(self._chunks)[-STDERR_TAIL_BYTES:]
        return data.decode("utf-8", "replace").strip()


def child_env(**pg: str) -> dict[str, str]:
    """The environment of a PostgreSQL tool: PATH, HOME, TZ, the locale, and `pg` (PGPASSWORD…)."""
    env = {k: v for k, v in os.environ.items() if k in _INHERITED or k.startswith("LC_")}
    for name, value in pg.items():
        if name not in LIBPQ_VARIABLES:
            raise ValueError(f"not a PostgreSQL connection variable: {name}")
        env[name] = value
    return env


def session_options(server_major: int) -> str:
    """libpq's `options` for a session pgkeep opens on a server of this major: the
    client check, so a backend whose client died (a killed pg_dump waiting for a lock)
    gives up its locks and snapshot within seconds. "" for servers older than 14."""
    if server_major < CLIENT_CHECK_SINCE:
        return ""
    return f"-c client_connection_check_interval={CLIENT_CHECK_INTERVAL}"


def widen_pipe(stream: IO[bytes], size: int = PIPE_BYTES) -> None:
    """Let the child write up to `size` ahead of its reader (best effort: Linux only)."""
    with contextlib.suppress(OSError, AttributeError):
        fcntl.fcntl(stream.fileno(), fcntl.F_SETPIPE_SZ, size)


class ReadAhead:
    """Reads a pipe on its own thread, up to `depth` chunks ahead of the consumer.

    The consumer's work on each chunk (hashing, compressing, writing; all of it
    releases the GIL) then overlaps with reading, so the child seldom waits on a
    full pipe. Plain `os.read`, which returns what the pipe holds: a buffered
    `read(n)` re-takes the GIL for every small read until it has `n` bytes, and
    measured ~20% slower on a 488 MB dump.

    pg_dump writes a few KiB at a time, so a reader that keeps up gets tiny chunks
    (56,158 reads for that dump, each a trip through the queue and the consumer).
    After a small read the thread pauses PAUSE seconds to let the pipe fill: 2,138
    reads, and a 1 MiB pipe takes over 1 GB/s of output to fill in that time.
    """

    PAUSE = 0.001

    def __init__(self, fd: int, chunk_size: int, depth: int = 4) -> None:
        self._queue: queue.Queue[bytes | OSError | None] = queue.Queue(depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, args=(fd, chunk_size), daemon=True)
        self._thread.start()

    def _read(self, fd: int, chunk_size: int) -> None:
        try:
            while chunk := os.read(fd, chunk_size):
                if not self._put(chunk):
                    return
                if len(chunk) < chunk_size // 4:
                    time.sleep(self.PAUSE)
        except OSError as exc:
            self._put(exc)
            return
        self._put(None)

    def _put(self, item: bytes | OSError | None) -> bool:
        """Queue an item unless the consumer has gone; False once it has."""
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> Iterator[bytes]:
        while (item := self._queue.get()) is not None:
            if isinstance(item, OSError):
                raise item
            yield item

    def close(self) -> None:
        """Stop reading; returns once the stream has ended (end the child first)."""
        self._stop.set()
        self._thread.join()


def piped_output(
    proc: subprocess.Popen[bytes],
    reader: ReadAhead,
    tail: StderrTail,
    failed: Callable[[int], Exception],
) -> Iterator[bytes]:
    """A child's output as it comes, then its exit checked: `failed(code)` is raised for
    a non-zero one once its stderr tail is complete."""
    yield from reader
    code = proc.wait()
    tail.join()
    if code != 0:
        raise failed(code)


_SPAWNER = Spawner()


def spawn(
    argv: Sequence[str],
    env: Mapping[str, str],
    *,
    stdin: int | None,
    stdout: int | None,
    pass_fds: Sequence[int] = (),
) -> subprocess.Popen[bytes]:
    """Start a tool (`argv[0]` its path) without a shell, its stderr piped, tied to
    pgkeep's life: it is killed when pgkeep ends, however that happens (lifeline.py)."""
    path = Path(argv[0])
    if not os.access(path, os.X_OK):  # lifeline execs it: say why here, as Popen would
        reason = "Permission denied" if path.exists() else "No such file or directory"
        raise ToolError(f"cannot run {path.name}: {reason}")
    command = [sys.executable, "-I", "-S", _LIFELINE, str(os.getpid()), *argv]
    try:
        return _SPAWNER.start(
            lambda: subprocess.Popen(
                command,
                stdin=stdin,
                stdout=stdout,
                stderr=subprocess.PIPE,
                env=dict(env),
                pass_fds=tuple(pass_fds),
            )
        )
    except OSError as exc:
        raise ToolError(f"cannot run {path.name}: {exc.strerror}") from exc


def describe_exit(tool: str, code: int) -> str:
    return (
        f"{tool} was killed by signal {-code}"
        if code < 0
        else f"{tool} failed with exit code {code}"
    )


def run_feeding(
    argv: Sequence[str],
    env: Mapping[str, str],
    chunks: Iterable[bytes],
    pass_fds: Sequence[int] = (),
) -> tuple[int, str]:
    """Run a tool with `chunks` on its stdin; (exit code, stderr tail).

    If the tool stops reading early (it failed, or needed only a prefix), the
    rest of the input is not sent; if the input raises, the tool is killed.
    """
    proc = spawn(argv, env, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, pass_fds=pass_fds)
    assert proc.stdin is not None  # noqa: S101 (PIPE)
    assert proc.stderr is not None  # noqa: S101 (PIPE)
    tail = StderrTail(proc.stderr)
    try:
        try:
            for chunk in chunks:
                proc.stdin.write(chunk)
            proc.stdin.close()
        except BrokenPipeError:
            pass  # the tool exited; its exit code tells why
    except BaseException:
        proc.kill()
        raise
    finally:
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.close()
        code = proc.wait()
        tail.join()
    return code, tail.text()


def run(
    argv: Sequence[str], env: Mapping[str, str], pass_fds: Sequence[int] = ()
) -> tuple[int, str]:
    """Run a tool to completion with no input; (exit code, stderr tail)."""
    return run_feeding(argv, env, (), pass_fds)


def run_output(
    argv: Sequence[str], env: Mapping[str, str], pass_fds: Sequence[int] = ()
) -> tuple[int, bytes, str]:
    """Run a tool with no input; (exit code, its whole stdout, stderr tail). For small
    outputs only (pg_restore --list)."""
    proc = spawn(argv, env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, pass_fds=pass_fds)
    assert proc.stdout is not None  # noqa: S101 (PIPE)
    assert proc.stderr is not None  # noqa: S101 (PIPE)
    tail = StderrTail(proc.stderr)
    try:
        out = proc.stdout.read()
    finally:
        proc.stdout.close()
        code = proc.wait()
        tail.join()
    return code, out, tail.text()
