"""Finding PostgreSQL client tools and choosing the one that fits the server.

pg_dump must be at least the server's major version; a newer one can write SQL
an older server rejects (PostgreSQL 18's pg_dump emits `SET transaction_timeout`),
so the same major is preferred, then the newest newer one.
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from pgkeep.errors import ToolError
from pgkeep.postgres.process import child_env

_VERSION = re.compile(r"\(PostgreSQL\)\s+([0-9]+)(?:\.([0-9]+))?")
SYSTEM_GLOB = "/usr/lib/postgresql/*/bin"


@dataclass(frozen=True)
class Tool:
    name: str
    path: Path
    major: int
    version: str


def search_dirs(pg_bin_dir: Path | None) -> list[Path]:
    """PGKEEP_PG_BIN_DIR first, then Debian's per-version directories (newest first), then PATH."""
    dirs = [pg_bin_dir] if pg_bin_dir is not None else []
    system = sorted(Path("/").glob(SYSTEM_GLOB.lstrip("/")), key=_dir_version, reverse=True)
    dirs += system
    dirs += [Path(p) for p in os.environ.get("PATH", "").split(os.pathsep) if p]
    return dirs


def find_tools(name: str, dirs: list[Path]) -> list[Tool]:
    """Every distinct, runnable `name` in `dirs`, in search order."""
    tools, seen = [], set()
    for directory in dirs:
        path = directory / name
        if not (path.is_file() and os.access(path, os.X_OK)):
            continue
        real = path.resolve()
        if real in seen:
            continue
        seen.add(real)
        version = tool_version(str(path))
        if version is not None:
            tools.append(Tool(name, path, version[0], version[1]))
    return tools


def choose(tools: list[Tool], server_major: int, name: str) -> Tool:
    """Same major as the server, else the newest newer; else ToolError naming what to install."""
    same = [t for t in tools if t.major == server_major]
    if same:
        return same[0]
    newer = sorted((t for t in tools if t.major > server_major), key=lambda t: t.major)
    if newer:
        return newer[-1]
    install = (
        f"install the PostgreSQL {server_major} client tools (for example "
        f"postgresql-client-{server_major}) or set PGKEEP_PG_BIN_DIR to a directory "
        f"holding {name} {server_major} or newer"
    )
    if not tools:
        raise ToolError(f"{name} not found for PostgreSQL {server_major}", install)
    newest = max(tools, key=lambda t: t.major)
    raise ToolError(
        f"{name} {newest.version} ({newest.path}) is older than the server "
        f"(PostgreSQL {server_major}) and cannot dump it",
        install,
    )


def choose_reader(
    tools_found: list[Tool], server_major: int, archive_major: int, name: str
) -> Tool:
    """psql/pg_restore for restoring an archive made by pg_dump `archive_major` into a server.

    It must be at least as new as the archive (older ones cannot read newer
    archives or meta-commands); among those, the server's own major is preferred.
    """
    usable = [t for t in tools_found if t.major >= archive_major]
    same = [t for t in usable if t.major == server_major]
    if same:
        return same[0]
    if usable:
        return max(usable, key=lambda t: t.major)
    need = max(server_major, archive_major)
    raise ToolError(
        f"no {name} can restore this backup: it was made by pg_dump {archive_major} "
        f"for a PostgreSQL {server_major} server",
        f"install the PostgreSQL {need} client tools (for example postgresql-client-{need}) "
        f"or set PGKEEP_PG_BIN_DIR to a directory holding {name} {need} or newer",
    )


# The minor releases that brought psql's \restrict and pg_dump --restrict-key (August 2025).
_RESTRICT_SINCE = {13: 22, 14: 19, 15: 14, 16: 10, 17: 6}


def writes_restrict_key(tool: Tool) -> bool:
    """Whether this pg_dump takes `--restrict-key` (and this psql knows `\\restrict`)."""
    if tool.major >= 18:
        return True
    minor = tool.version.partition(".")[2]
    since = _RESTRICT_SINCE.get(tool.major)
    return since is not None and minor.isdigit() and int(minor) >= since


@functools.cache
def tool_version(path: str) -> tuple[int, str] | None:
    """(major, full version) from `path --version`; None if it is not a PostgreSQL tool."""
    try:
        result = subprocess.run(
            [path, "--version"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
            env=child_env(),
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = _VERSION.search(result.stdout)
    if match is None:
        return None
    version = match[1] + (f".{match[2]}" if match[2] else "")
    return int(match[1]), version


def _dir_version(directory: Path) -> int:
    name = directory.parent.name
    return int(name) if name.isdigit() else 0
