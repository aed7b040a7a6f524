"""Targets from settings: `PGKEEP_DATABASE_URL`, `[targets.NAME]`, and what `[servers.KEY]` finds.

A target's name comes from the configuration, never from a host name:
`[targets.NAME]` is NAME; a database found by `[servers.KEY]` is `KEY.DATABASE`,
with every character other than letters, digits, `_` and `-` in the database's
name written `~XX` (its UTF-8 bytes in hex), so a name is safe in a URL and as a
folder; `globals = true` adds the target `KEY` (roles and tablespaces). Each
target keeps its backups under `<store>/<prefix>/`, the prefix defaulting to its
name; the target of `PGKEEP_DATABASE_URL` alone stays at the store's root. No two
targets share a folder: configured ones that would stop the start, and a found database
whose folder is taken is not made a target (a `Refusal`, logged and in `/readyz`).
"""

from __future__ import annotations

import fnmatch
import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from psycopg.conninfo import conninfo_to_dict, make_conninfo

from pgkeep.config import Settings
from pgkeep.config_file import TARGET_NAME, ServerConfig
from pgkeep.core.models import Check
from pgkeep.core.restore_rules import SCRATCH_PREFIX, STAGING_PREFIX
from pgkeep.errors import ConfigError
from pgkeep.postgres.connection import Connection

logger = logging.getLogger(__name__)

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
    def target(self) -> Connection:
        return Connection.from_url(self.url)


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
        specs.append(TargetSpec(Connection.from_url(url).dbname, "database", url, "", settings))
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


def sharing_prefix(spec: TargetSpec, others: Iterable[TargetSpec]) -> TargetSpec | None:
    """The other target that keeps its backups in `spec`'s folder, if any: two targets in
    one folder see each other's backups, and each one's retention deletes the other's."""
    return next((o for o in others if o.prefix == spec.prefix and o.name != spec.name), None)


@dataclass(frozen=True)
class Refusal:
    """A database a server found that was not made a target: its folder is another's."""

    spec: TargetSpec
    holder: str  # the target already keeping its backups there

    @property
    def message(self) -> str:
        return (
            f"database {self.spec.target.dbname!r} of server {self.spec.server} is not backed "
            f"up: its target {self.spec.name!r} would keep its backups under prefix "
            f"{self.spec.prefix!r}, the prefix of target {self.holder!r}; give {self.holder!r} "
            "another prefix or exclude the database"
        )


class Refusals:
    """The found databases not made targets, as of each server's latest discovery."""

    def __init__(self) -> None:
        self._by_name: dict[str, Refusal] = {}
        self._holders: set[str] = set()  # targets whose readiness shows their refusals

    def refuse(self, refusal: Refusal) -> None:
        """Record it; logged the first time, not at every rediscovery."""
        if refusal.spec.name not in self._by_name:
            logger.error("%s", refusal.message)
        self._by_name[refusal.spec.name] = refusal

    def watch(self, holder: str) -> bool:
        """True the first time `holder` keeps a found database out: give it the check."""
        new = holder not in self._holders
        self._holders.add(holder)
        return new

    def forget(self, server: str, keep: set[str]) -> None:
        """After `server` was searched: only the refusals in `keep` still stand."""
        for name, refusal in list(self._by_name.items()):
            if refusal.spec.server == server and name not in keep:
                del self._by_name[name]

    def __iter__(self) -> Iterator[Refusal]:
        return iter(list(self._by_name.values()))

    def check(self, holder: TargetSpec) -> Check:
        """Readiness of `holder`'s folder: fails while a found database is kept out of it."""
        messages = [r.message for r in self if r.holder == holder.name]
        return Check("prefix", not messages, "; ".join(messages) or "no found database shares it")


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
    """Names and folders once each among the configured targets; found ones are checked
    as they are found (Runtime.discover, with `sharing_prefix`)."""
    names = [s.name for s in specs]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ConfigError(f"two targets are named {twice[0]!r}", "give each target its own name")
    for index, spec in enumerate(specs):
        holder = sharing_prefix(spec, specs[:index])
        if holder is not None:
            raise ConfigError(
                f"two targets keep their backups under the same prefix {spec.prefix!r}: "
                f"{holder.name!r} and {spec.name!r}",
                "set a prefix of its own for each",
            )
