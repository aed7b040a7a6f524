"""Globals: a server's roles and tablespaces, dumped with `pg_dumpall --globals-only`.

They carry every role's password verifier (SCRAM or MD5), which anyone holding the
backup can attack offline. `globals_passwords = false` dumps with `--no-role-passwords`;
so does a role that may not read pg_authid (pg_dumpall fails otherwise). Either way the
flag is recorded in the manifest's flags. A restore of globals is by hand, never
through the API.
"""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from pgkeep.core.control import Control
from pgkeep.core.models import BackupOptions, SourceFacts
from pgkeep.errors import DumpFailed
from pgkeep.postgres import discovery, server, tools
from pgkeep.postgres.connection import Connection
from pgkeep.postgres.messages import cause_first
from pgkeep.postgres.process import (
    ReadAhead,
    StderrTail,
    describe_exit,
    piped_output,
    spawn,
    widen_pipe,
)

logger = logging.getLogger(__name__)

CHUNK_SIZE = 1024 * 1024
GLOBALS = "(globals)"


class GlobalsStream:
    def __init__(
        self,
        chunks: Iterator[bytes],
        versions: tuple[str, str],
        key: str | None,
        flags: tuple[str, ...],
    ) -> None:
        self.chunks = chunks
        self.server_version, self.tool_version = versions
        self.restrict_key = key
        self.flags = flags
        self.facts = SourceFacts()

    def row_counts(self) -> dict[str, int] | None:
        return None


class PgGlobalsDumper:
    """Dumper for a server's globals (the `target` is the server's maintenance database)."""

    kind = "globals"

    def __init__(
        self,
        admin: Connection,
        bin_dirs: list[Path],
        lock_wait_seconds: int = 300,
        passwords: bool = True,
    ) -> None:
        self._admin = admin
        self._bin_dirs = bin_dirs
        self._lock_wait = lock_wait_seconds
        self._passwords = passwords  # globals_passwords: False leaves the verifiers out

    @property
    def target(self) -> str:
        return f"globals of {self._admin.address}"

    def database_size(self) -> int:
        return 1_000_000  # roles and tablespaces: small

    def check(self) -> str:
        tool = self._tool(server.server_major(self._admin))
        return f"{self._admin.address} reachable; pg_dumpall {tool.version} at {tool.path}"

    def _tool(self, major: int) -> tools.Tool:
        return tools.choose(tools.find_tools("pg_dumpall", self._bin_dirs), major, "pg_dumpall")

    @contextmanager
    def dump(
        self,
        options: BackupOptions | None = None,
        control: Control | None = None,
        restrict_key: str = "",
    ) -> Iterator[GlobalsStream]:
        major = server.server_major(self._admin)
        tool = self._tool(major)
        flags = () if self._with_passwords() else ("--no-role-passwords",)
        key = restrict_key if restrict_key and tools.writes_restrict_key(tool) else None
        argv = [
            str(tool.path),
            "--globals-only",
            "--no-password",
            f"--lock-wait-timeout={self._lock_wait}s",
            *flags,
            *([f"--restrict-key={key}"] if key else []),
            f"--dbname={self._admin.conninfo}",
        ]
        proc = spawn(
            argv, self._admin.child_env(major), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE
        )
        assert proc.stdout is not None  # noqa: S101 (PIPE)
        assert proc.stderr is not None  # noqa: S101 (PIPE)
        if control is not None:
            control.on_cancel(proc.kill)
        tail = StderrTail(proc.stderr)
        widen_pipe(proc.stdout)
        reader = ReadAhead(proc.stdout.fileno(), CHUNK_SIZE)
        version = server.version_of_server(self._admin)
        try:
            yield GlobalsStream(
                piped_output(proc, reader, tail, self._failed(tail)),
                (version, tool.version),
                key,
                flags,
            )
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            reader.close()
            proc.stdout.close()
            tail.join()

    def _with_passwords(self) -> bool:
        if not self._passwords:
            logger.info(
                "globals of %s dumped without role passwords: globals_passwords is off",
                self._admin.address,
            )
            return False
        if not discovery.can_read_role_passwords(self._admin):
            logger.info(
                "globals of %s dumped without role passwords: the role may not read pg_authid",
                self._admin.address,
            )
            return False
        return True

    def _failed(self, tail: StderrTail) -> Callable[[int], DumpFailed]:
        def failed(code: int) -> DumpFailed:
            cause, details = cause_first(self._admin.redact(tail.text()))
            said = f": {cause}" if cause else ""
            return DumpFailed(
                f"{describe_exit('pg_dumpall', code)} on {self._admin.address}{said}",
                details,
                exit_code=code,
            )

        return failed
