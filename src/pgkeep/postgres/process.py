"""Running PostgreSQL client tools: spawn without a shell, drain stderr, feed stdin."""

from __future__ import annotations

import collections
import contextlib
import subprocess
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO

from pgkeep.errors import ToolError

STDERR_TAIL_BYTES = 4096


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


def spawn(
    argv: Sequence[str], env: Mapping[str, str], *, stdin: int | None, stdout: int | None
) -> subprocess.Popen[bytes]:
    try:
        return subprocess.Popen(
            list(argv), stdin=stdin, stdout=stdout, stderr=subprocess.PIPE, env=dict(env)
        )
    except OSError as exc:
        raise ToolError(f"cannot run {Path(argv[0]).name}: {exc.strerror}") from exc


def describe_exit(tool: str, code: int) -> str:
    return (
        f"{tool} was killed by signal {-code}"
        if code < 0
        else f"{tool} failed with exit code {code}"
    )


def run_feeding(
    argv: Sequence[str], env: Mapping[str, str], chunks: Iterable[bytes]
) -> tuple[int, str]:
    """Run a tool with `chunks` on its stdin; (exit code, stderr tail).

    If the tool stops reading early (it failed, or needed only a prefix), the
    rest of the input is not sent; if the input raises, the tool is killed.
    """
    proc = spawn(argv, env, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
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


def run(argv: Sequence[str], env: Mapping[str, str]) -> tuple[int, str]:
    """Run a tool to completion with no input; (exit code, stderr tail)."""
    return run_feeding(argv, env, ())
