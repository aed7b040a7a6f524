"""pg_dump: the argv (pure) and the runner that streams its stdout and maps its failures."""

from __future__ import annotations

import collections
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from pgkeep.errors import DumpFailed, ToolError
from pgkeep.postgres import server, tools
from pgkeep.postgres.target import Target

CHUNK_SIZE = 256 * 1024
STDERR_TAIL_BYTES = 4096


def dump_argv(pg_dump: Path, conninfo: str) -> list[str]:
    """Plain-SQL dump to stdout; the conninfo carries no password, and none is ever prompted for."""
    return [str(pg_dump), "--format=plain", "--no-password", f"--dbname={conninfo}"]


class PgDumper:
    """Dumper for one target: picks a pg_dump that fits the server, then streams its output."""

    def __init__(self, target: Target, bin_dirs: list[Path]) -> None:
        self._target = target
        self._bin_dirs = bin_dirs

    @property
    def target(self) -> str:
        return self._target.dbname

    def pg_dump(self) -> tools.Tool:
        major = server.server_major(self._target)
        return tools.choose(tools.find_tools("pg_dump", self._bin_dirs), major, "pg_dump")

    @contextmanager
    def dump(self) -> Iterator[Iterator[bytes]]:
        tool = self.pg_dump()
        try:
            proc = subprocess.Popen(
                dump_argv(tool.path, self._target.conninfo),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=self._target.child_env(),
            )
        except OSError as exc:
            raise ToolError(f"cannot run {tool.path}: {exc.strerror}") from exc
        assert proc.stdout is not None  # noqa: S101 (PIPE)
        assert proc.stderr is not None  # noqa: S101 (PIPE)
        tail = _StderrTail(proc.stderr)
        try:
            yield self._chunks(proc, proc.stdout, tail)
        finally:
            if proc.poll() is None:
                proc.kill()  # the consumer stopped early: end pg_dump, leave nothing running
            proc.wait()
            proc.stdout.close()
            tail.join()

    def _chunks(
        self, proc: subprocess.Popen[bytes], out: IO[bytes], tail: _StderrTail
    ) -> Iterator[bytes]:
        while chunk := out.read(CHUNK_SIZE):
            yield chunk
        code = proc.wait()
        tail.join()
        if code != 0:
            how = f"was killed by signal {-code}" if code < 0 else f"failed with exit code {code}"
            raise DumpFailed(
                f"pg_dump of database {self.target!r} {how}",
                self._target.redact(tail.text()),
                exit_code=code,
            )


class _StderrTail:
    """Drains a child's stderr on a thread, keeping only its last few KiB."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._chunks: collections.deque[bytes] = collections.deque()
        self._size = 0
        self._thread = threading.Thread(target=self._drain, args=(stream,), daemon=True)
        self._thread.start()

    def _drain(self, stream: IO[bytes]) -> None:
        with stream:
            while chunk := stream.read1(4096):  # type: ignore[attr-defined]
                self._chunks.append(chunk)
                self._size += len(chunk)
                while self._size - len(self._chunks[0]) >= STDERR_TAIL_BYTES:
                    self._size -= len(self._chunks.popleft())

    def join(self) -> None:
        self._thread.join(timeout=10)

    def text(self) -> str:
        data = b"".join(self._chunks)[-STDERR_TAIL_BYTES:]
        return data.decode("utf-8", "replace").strip()
