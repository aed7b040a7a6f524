"""Targets from settings: `PGKEEP_DATABASE_URL`, `[targets.NAME]`, and what `[servers.KEY]` finds.

A target's name comes from the configuration, never from a host name:
`[targets.NAME]` is NAME; a database found by `[servers.KEY]` is `KEY.DATABASE`,
with every character other than letters, digits, `_` and `-` in the database's
name written `~XX` (its UTF-8 bytes in hex), so a name is safe in a URL and as a
folder; `globals = true` adds the target `KEY` (roles and tablespaces). Each
target keeps its backups under `<store>/<prefix>/`, the prefix defaulting to its
name; the target of `PGKEEP_DATABASE_URL` alone stays at the store's root.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass

from psycopg.conninfo import conninfo_to_dict, make_conninfo

from pgkeep.config import Settings
from pgkeep.config_file import TARGET_NAME, ServerConfig
from pgkeep.core.restore_rules import SCRATCH_PREFIX, STAGING_PREFIX
from pgkeep.errors import ConfigError
from pgkeep.postgres.target import Target

_SAFE = re.compile(r"[A-Za-z0-9_-]", re.ASCII)


@dataclass(frozen=True)
class TargetSpec:
    name: str
    kind: str  # "database" or "globals"
    url: str  # the database (for globals: the server's maintenance database), with password
    prefix: str  # folder in the store; "" for its root
    settings: Settings  # with the target's overrides applied
    server: str | None = None  # the [servers.KEY] that found it

    @property
    def target(self) -> Target:
        return Target.from_url(self.url)


def escape(database: str) -> str:
    """A database's name as part of a target name: unsafe characters as ~XX."""
    return "".join(c if _SAFE.fullmatch(c) else _hex(c) for c in database)


def _hex(character: str) -> str:
    return "".join(f"~{byte:02X}" for byte in character.encode())


def explicit(settings: Settings) -> list[TargetSpec]:
    """The targets named in settings (the ones servers find come from `found`)."""
    specs = []
    if settings.database_url is not None:
        url = settings.require_database_url()
        specs.append(TargetSpec(Target.from_url(url).dbname, "database", url, "", settings))
    for name, config in settings.targets.items():
        _check_name(name, f"targets.{name}")
        prefix = name if config.prefix is None else config.prefix
        url = config.database_url.get_secret_value()
        specs.append(TargetSpec(name, "database", url, prefix, settings.for_target(config)))
    for key, server in settings.servers.items():
        _check_name(key, f"servers.{key}")
        if server.globals:
            url = server.url.get_secret_value()
            specs.append(TargetSpec(key, "globals", url, key, settings.for_target(server), key))
    _check_unique(specs)
    return specs


def found(
    settings: Settings, key: str, server: ServerConfig, databases: list[str], skip: set[str]
) -> list[TargetSpec]:
    """Targets for the databases a server holds that its globs select."""
    specs = []
    for database in databases:
        if not _selected(database, server, skip):
            continue
        name = f"{key}.{escape(database)}"
        url = _url_for(server.url.get_secret_value(), database)
        specs.append(TargetSpec(name, "database", url, name, settings.for_target(server), key))
    return specs


def _selected(database: str, server: ServerConfig, skip: set[str]) -> bool:
    if database in skip or database.startswith((SCRATCH_PREFIX, STAGING_PREFIX)):
        return False
    included = any(fnmatch.fnmatchcase(database, glob) for glob in server.include)
    return included and not any(fnmatch.fnmatchcase(database, glob) for glob in server.exclude)


def _url_for(url: str, database: str) -> str:
    """The server's URL, naming another database (a keyword string, so any name fits)."""
    params = {k: str(v) for k, v in conninfo_to_dict(url).items()}
    params["dbname"] = database
    return make_conninfo(**params)


def _check_name(name: str, where: str) -> None:
    if not TARGET_NAME.fullmatch(name) or "." in name:
        raise ConfigError(
            f"{where}: not a target name",
            "letters, digits, _, ~ and -, at most 200 characters, no dots",
        )


def _check_unique(specs: list[TargetSpec]) -> None:
    names = [s.name for s in specs]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ConfigError(f"two targets are named {twice[0]!r}", "give each target its own name")
    prefixes = [s.prefix for s in specs]
    shared = sorted({p for p in prefixes if prefixes.count(p) > 1})
    if shared:
        raise ConfigError(
            f"two targets keep their backups under the same prefix {shared[0]!r}",
            "set a prefix of its own for each",
        )
