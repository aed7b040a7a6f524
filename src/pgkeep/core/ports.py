"""The roles the core needs filled by adapters: where backups are kept, what dumps a target,
and what restores into a server.

They live here so that the core depends on nothing outside itself; `storage/`
and `postgres/` hold the implementations.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from typing import Protocol

from pgkeep.core.control import Control
from pgkeep.core.models import BackupOptions, DumpFormat, Features, StoredObject

Opener = Callable[[], Iterable[bytes]]


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
        """Open `name` for reading. `listed` is the object as a listing just showed it: a
        store where asking costs a request may trust it (a read then fails if the object
        changed since)."""
        ...

    def open_write(self, name: str) -> Writer:
        """Reserve `name` and start writing; raises Conflict if it is taken."""
        ...

    def put(self, name: str, data: bytes) -> None:
        """Write a small object whole, atomically replacing any previous one."""
        ...

    def delete(self, name: str) -> None: ...

    def remove_partials(
        self, keep: frozenset[str] = frozenset(), older_than: float = 0.0
    ) -> builtins.list[str]:
        """Remove leftovers of interrupted writes; returns their names. Never those of the
        backups in `keep` (being written, maybe by another instance), nor any started less
        than `older_than` seconds ago."""
        ...

    def free_bytes(self) -> int | None:
        """Space left for new objects; None unless `features.free_space`."""
        ...

    def check(self) -> str:
        """Reachable and writable (a probe that never collides); what was found, or an error."""
        ...

    def version(self) -> object | None:
        """A token that changes whenever objects are added, removed or replaced; None when
        the storage cannot promise that right now (then nothing may be cached)."""
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

    def check(self) -> str:
        """Connect and choose pg_dump; what was found, or an error saying what is wrong."""
        ...

    def dump(
        self, options: BackupOptions, control: Control | None = None, restrict_key: str = ""
    ) -> AbstractContextManager[DumpStream]:
        """Start a dump; its chunks raise DumpFailed at their end if the dump failed.

        A plain dump is made with `restrict_key` when the tool can write one.

        Leaving the context ends the dump process whether or not it finished.
        """
        ...


class Restorer(Protocol):
    """Creates, loads, counts and drops databases on one server."""

    @property
    def server(self) -> str: ...

    def exists(self, database: str) -> bool: ...

    def create(self, database: str) -> None: ...

    def drop(self, database: str) -> None: ...

    def rename(self, old: str, new: str) -> None: ...

    def row_counts(self, database: str) -> dict[str, int]: ...

    def sweep(self, prefix: str) -> builtins.list[str]:
        """Drop every database whose name starts with `prefix`; their names."""
        ...

    def load(
        self,
        database: str,
        fmt: DumpFormat,
        archive_major: int,
        open_chunks: Opener,
        size_hint: int = 0,
    ) -> None:
        """Restore into an existing empty database; RestoreFailed on any error. `size_hint`:
        about how many bytes a custom archive is, to check the staging space first."""
        ...

    def check_archive(self, archive_major: int, open_chunks: Opener, size_hint: int = 0) -> str:
        """Read a custom archive end to end; Corrupt if it cannot. Returns what was done."""
        ...
