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
# Known vulnerabilities of psql and pg_restore that a restore can trigger, each with the
# minor release of every major upstream supported then that fixed it (issue 18).
RESTORE_CVES = {"CVE-2026-116314": {18: 7, 17: 12, 16: 16, 15: 20}}
OLDEST_SUPPORTED = 15  # older majors get no fixes upstream at all
READERS = ("psql", "pg_restore")


def writes_restrict_key(tool: Tool) -> bool:
    """Whether this pg_dump takes `--restrict-key` (and this psql knows `\\restrict`)."""
    if tool.major >= 18:
        return True
    since = _RESTRICT_SINCE.get(tool.major)
    return since is not None and _minor(tool) >= since


def known_cves(tool: Tool) -> list[str]:
    """The restore-time CVEs this psql or pg_restore is not fixed for ([] for other tools,
    and for majors past upstream support, which `notice` names as such)."""
    if tool.name not in READERS:
        return []
    return [
        cve
        for cve, fixed in RESTORE_CVES.items()
        if tool.major in fixed and _minor(tool) < fixed[tool.major]
    ]


def notice(tool: Tool) -> str | None:
    """A line naming a psql or pg_restore to upgrade, by name and version (never its path:
    it is logged and shown in readiness); None when nothing is known against it."""
    if tool.name not in READERS:
        return None
    if tool.major < OLDEST_SUPPORTED:
        return (
            f"{tool.name} {tool.version} is no longer supported upstream: no fixes for "
            f"restore-time vulnerabilities ({', '.join(RESTORE_CVES)} and later); install "
            f"PostgreSQL {OLDEST_SUPPORTED} or newer client tools"
        )
    cves = known_cves(tool)
    if not cves:
        return None
    fixed = max(RESTORE_CVES[cve][tool.major] for cve in cves)
    return (
        f"{tool.name} {tool.version} has known restore-time vulnerabilities: "
        f"{', '.join(cves)}; fixed in {tool.major}.{fixed}"
    )


def reader_notices(dirs: list[Path]) -> list[str]:
    """A notice for each psql and pg_restore in `dirs` that has one."""
    found = [notice(t) for name in READERS for t in find_tools(name, dirs)]
    return [line for line in found if line is not None]


def _minor(tool: Tool) -> int:
    """The minor version; 0 for a major alone (a beta or a development build)."""
    minor = tool.version.partition(".")[2]
    return int(minor) if minor.isdigit() else 0


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
