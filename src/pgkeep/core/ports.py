"""The roles the core needs filled by adapters: where backups are kept, what dumps a target,
and what restores into a server.

They live here so that the core depends on nothing outside itself; `storage/`
and `postgres/` hold the implementations.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Protocol

from pgkeep.core.models import BackupOptions, DumpFormat, StoredObject

if TYPE_CHECKING:
    from pgkeep.core.jobs import Control

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

    def list(self) -> builtins.list[StoredObject]: ...

    def open_read(self, name: str) -> ReadHandle: ...

    def open_write(self, name: str) -> Writer:
        """Reserve `name` and start writing; raises Conflict if it is taken."""
        ...

    def put(self, name: str, data: bytes) -> None:
        """Write a small object whole, atomically replacing any previous one."""
        ...

    def delete(self, name: str) -> None: ...

    def remove_partials(self) -> builtins.list[str]:
        """Remove leftovers of interrupted writes; returns their names."""
        ...

    def free_bytes(self) -> int | None:
        """Space left for new objects; None when the storage cannot tell."""
        ...

    def version(self) -> object | None:
        """A token that changes whenever objects are added, removed or replaced; None when
        the storage cannot promise that right now (then nothing may be cached)."""
        ...


class DumpStream(Protocol):
    """A dump under way: its bytes, the versions involved and, once read to the end, row counts."""

    chunks: Iterator[bytes]
    server_version: str
    tool_version: str

    def row_counts(self) -> dict[str, int] | None: ...


class Dumper(Protocol):
    """Dumps one target database as a stream of bytes."""

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
        self, options: BackupOptions, control: Control | None = None
    ) -> AbstractContextManager[DumpStream]:
        """Start a dump; its chunks raise DumpFailed at their end if the dump failed.

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

    def load(self, database: str, fmt: DumpFormat, archive_major: int, open_chunks: Opener) -> None:
        """Restore into an existing empty database; RestoreFailed on any error."""
        ...

    def check_archive(self, archive_major: int, open_chunks: Opener) -> str:
        """Read a custom archive end to end; Corrupt if it cannot. Returns what was done."""
        ...
