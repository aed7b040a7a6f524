"""The roles the core needs filled by adapters: where backups are kept, and what dumps a target.

They live here so that the core depends on nothing outside itself; `storage/`
and `postgres/` hold the implementations.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Protocol

from pgkeep.core.models import StoredObject


class ReadHandle(Protocol):
    """An object opened for reading: size and etag fixed at open, bytes read in ranges."""

    @property
    def info(self) -> StoredObject: ...

    @property
    def etag(self) -> str: ...

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

    def list(self) -> list[StoredObject]: ...

    def open_read(self, name: str) -> ReadHandle: ...

    def open_write(self, name: str) -> Writer:
        """Reserve `name` and start writing; raises Conflict if it is taken."""
        ...

    def delete(self, name: str) -> None: ...

    def remove_partials(self) -> builtins.list[str]:
        """Remove leftovers of interrupted writes; returns their names."""
        ...


class Dumper(Protocol):
    """Dumps one target database as a stream of bytes."""

    @property
    def target(self) -> str:
        """The target database's name, for messages and logs."""
        ...

    def dump(self) -> AbstractContextManager[Iterator[bytes]]:
        """Start a dump; the iterator raises DumpFailed at its end if the dump failed.

        Leaving the context ends the dump process whether or not it finished.
        """
        ...
