"""The roles the core needs filled by adapters: where backups are kept, what dumps a target,
and what restores into a server. They live here so that the core depends on nothing
outside itself; `storage/` and `postgres/` hold the implementations.
"""

from __future__ import annotations

import builtins
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Protocol

from pgkeep.core.control import Control
from pgkeep.core.environment import Offers
from pgkeep.core.models import BackupOptions, DroppedForeignKey, Features, SourceFacts, StoredObject


class ReadHandle(Protocol):
    """An object opened for reading: size and etag fixed at open, bytes read in ranges."""

    @property
    def info(self) -> StoredObject: ...

    @property
    def etag(self) -> str: ...

    def read(self, offset: int, size: int) -> bytes:
        """Up to `size` bytes at `offset` (at least one); may wait on a device."""
        ...

    def read_cached(self, offset: int, size: int) -> bytes | None:
        """As `read` when memory already holds the bytes; None when reading would wait."""
        ...

    def iter_range(self, start: int, end: int) -> Iterator[bytes]:
        """Bytes `start` up to and excluding `end`, in bounded chunks."""
        ...

    def close(self) -> None: ...


class Writer(Protocol):
    """A new object being written: invisible until `commit`; leaving without it removes it."""

    @property
    def bytes_written(self) -> int: ...

    def write(self, chunk: bytes) -> None: ...

    def commit(self) -> None: ...

    def __enter__(self) -> Writer: ...

    def __exit__(self, *exc_info: object) -> None: ...


class Storage(Protocol):
    """Keeps completed objects by name; partial writes are never listed or read."""

    features: Features
    where: str  # for messages: a directory, or s3://bucket/prefix (never credentials)

    def list(self) -> builtins.list[StoredObject]: ...

    def open_read(self, name: str, listed: StoredObject | None = None) -> ReadHandle:
        """Open `name` for reading. `listed`: the object as a listing just showed it (a store
        may trust it; a read then fails if the object changed since)."""
        ...

    def open_write(self, name: str) -> Writer:
        """Reserve `name` and start writing; raises Conflict if it is taken."""
        ...

    def put(self, name: str, data: bytes) -> None:
        """Write a small object whole, atomically replacing any previous one."""
        ...

    def delete(self, name: str) -> None: ...

    def remove_partials(
        self,
        keep: frozenset[str] = frozenset(),
        older_than: float = 0.0,
        dead: frozenset[str] = frozenset(),
    ) -> builtins.list[str]:
        """Remove leftovers of interrupted writes; returns their names. Never those of the
        backups in `keep` (being written, maybe by another instance), nor any started less
        than `older_than` seconds ago unless its backup is in `dead` (its writer stopped)."""
        ...

    def free_bytes(self) -> int | None:
        """Space left for new objects; None unless `features.free_space`."""
        ...

    def check(self) -> str:
        """Reachable and writable (a probe that never collides); what was found, or an error."""
        ...

    def version(self) -> object | None:
        """A token that changes with every add, remove or replace; None: nothing may be cached."""
        ...

    def changed_elsewhere(self) -> None:
        """Another instance changed the store: what `version` promised no longer holds."""
        ...


class DumpStream(Protocol):
    """A dump under way: its bytes, the versions involved and, once read to the end, row counts."""

    chunks: Iterator[bytes]
    server_version: str
    tool_version: str
    restrict_key: str | None  # the key of the plain dump's opening `\\restrict` line
    flags: tuple[str, ...]  # options that change what the dump holds (--no-role-passwords)
    facts: SourceFacts  # what a restore needs to know of the source

    def row_counts(self) -> dict[str, int] | None: ...


class Dumper(Protocol):
    """Dumps one target (a database, or a server's globals) as a stream of bytes."""

    kind: str  # "database" or "globals"

    @property
    def target(self) -> str:
        """The target database's name, for messages and logs."""
        ...

    def database_size(self) -> int:
        """The target's size on disk (pg_database_size); DatabaseUnavailable if unreachable."""
        ...

    def check(self) -> str: ...  # connect, choose pg_dump: what was found, or an error

    def dump(
        self, options: BackupOptions, control: Control | None = None, restrict_key: str = ""
    ) -> AbstractContextManager[DumpStream]:
        """Start a dump; its chunks raise DumpFailed at their end if the dump failed. A plain
        dump is made with `restrict_key` when the tool can write one. Leaving the context
        ends the dump process whether or not it finished."""
        ...


class ArchiveChecker(Protocol):
    """Reads what a custom archive from elsewhere would run in pgkeep's own session."""

    def check_import(self, chunks: Iterable[bytes], size_hint: int) -> None:
        """Corrupt naming the first statement of its schema that pg_dump would not write
        there (an import's archive is trusted for nothing else)."""
        ...


class StagedArchive(Protocol):
    """A custom archive staged for pg_restore (read to the end, so its check ran)."""

    def printed(self, section: str) -> AbstractContextManager[Callable[[], Iterator[bytes]]]:
        """The SQL pg_restore would run for a schema section (`pre-data`, `post-data`): a
        function reading it from its start, as often as asked."""
        ...

    def load_data(self) -> None:
        """The archive's rows, by pg_restore as the loader; RestoreFailed on any error."""
        ...


class RestoreSession(Protocol):
    """One restore's runs into one database, each in its own transaction, as the admin (pgkeep's
    own role) or the loader (no superuser: rows, and every entry a non-superuser owns).
    `bare`: a rehearsal's, without owners or grants (pg_restore's --no-owner --no-privileges:
    what the loader made stays pgkeep's, grants are left out)."""

    bare: bool

    def run_sql(self, role: str, chunks: Iterable[bytes], owner: str = "") -> None:
        """Part of a plain dump, through psql (restricted from its first line, never lifted),
        as the admin or `owner`'s loader; RestoreFailed on any error. When `chunks` raise,
        psql is stopped before COMMIT."""
        ...

    def resolve(self, owner: str) -> str:
        """Who runs an entry `owner` owns: the admin when that role is a superuser here (or
        pgkeep's own, or predefined), else the loader (a role missing here too)."""
        ...

    def archive(
        self, chunks: Iterable[bytes], size_hint: int, imported: bool = False
    ) -> AbstractContextManager[StagedArchive]:
        """A custom archive staged once, in a file with no name."""
        ...


class Restorer(ArchiveChecker, Protocol):
    """Creates, loads, counts and drops databases on one server."""

    @property
    def server(self) -> str: ...

    def exists(self, database: str) -> bool: ...

    def create(self, database: str, owner: str = "") -> None:
        """A new database, owned by `owner` when that role exists on this server."""
        ...

    def drop(self, database: str) -> None: ...

    def rename(self, old: str, new: str) -> None: ...

    def give(self, database: str, owner: str) -> bool:
        """Make `owner` own the database; False when no such role exists here."""
        ...

    def row_counts(self, database: str) -> dict[str, int]: ...

    def trim(
        self, database: str, tables: frozenset[str], schemas: tuple[str, ...]
    ) -> builtins.list[DroppedForeignKey]:
        """Keep `tables` (rowCounts keys), `schemas`' objects and what they need; drop the rest."""
        ...

    def session(
        self, database: str, archive_major: int, job: str, bare: bool = False
    ) -> AbstractContextManager[RestoreSession]:
        """Runs into `database` (existing, empty) for the job `job` (`bare`: see RestoreSession)."""
        ...

    def offers(self, roles: Iterable[str]) -> Offers:
        """This server's major, the extensions it can install, which of `roles` exist."""
        ...

    def databases(self, prefix: str) -> builtins.list[str]: ...

    def loaders(self) -> builtins.list[str]: ...

    def drop_loader(self, role: str) -> None: ...

    def sweep_staged(self) -> builtins.list[str]:
        """Remove what a crash left staged (plaintext); their paths."""
        ...

    def check_archive(self, archive_major: int, chunks: Iterable[bytes], size_hint: int = 0) -> str:
        """Stage a custom archive (its chunks raise at their end if they were not the signed
        bytes) and read it end to end; Corrupt if it cannot be. Returns what was done."""
        ...


class TicketLedger(Protocol):
    """Download tickets redeemed once, in every process that may be shown one."""

    def redeem_once(self, nonce: str, expires_at: datetime) -> bool: ...


class ChangeFeed(Protocol):
    """Changes to targets' backups, told to every process that caches their lists."""

    def announce(self, target: str) -> None: ...

    def listen(self, on_change: Callable[[str], None], stop: threading.Event) -> None:
        """Call `on_change(target)` for each announcement ("*": maybe any) until `stop`."""
        ...


class ControlIdentity(Protocol):
    """A control database's own id and address (a store's marker names it)."""

    @property
    def where(self) -> str: ...

    def control_id(self) -> str: ...


class KnownTargets(Protocol):
    """The databases each `[servers.*]` entry has been found to hold (kept where jobs are),
    so a dropped database's target outlives a restart, marked gone."""

    def remember(self, server: str, databases: list[str]) -> None: ...

    def known(self, server: str) -> list[str]: ...

    def forget(self, server: str, database: str) -> None: ...


class Episodes(Protocol):
    """Alert episodes kept where jobs are: when a target was first seen, which alerts are
    open (one alert per episode, across restarts and instances)."""

    def first_seen(self, target: str, now: datetime) -> datetime: ...

    def open(self, kind: str, target: str, since: datetime) -> bool:
        """True when this opens the episode (so it is to be told); False when it was open."""
        ...

    def close(self, kind: str, target: str) -> None: ...
