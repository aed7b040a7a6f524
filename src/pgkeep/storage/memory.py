"""MemoryStorage: a real Storage kept in a dict, for tests and throwaway runs."""

from __future__ import annotations

import builtins
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

from pgkeep.core.models import Features, StoredObject
from pgkeep.errors import Conflict, NotFound, StorageError
from pgkeep.storage.meter import READS

CHUNK_SIZE = 256 * 1024


class MemoryStorage:
    features = Features()
    where = "memory"

    def __init__(self, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._objects: dict[str, tuple[bytes, datetime, int]] = {}
        self._writing: set[str] = set()
        self._lock = threading.Lock()
        self._clock = clock
        self._version = 0

    def list(self) -> list[StoredObject]:
        with self._lock:
            return [StoredObject(n, len(d), m, f'"m{v}"') for n, (d, m, v) in self._objects.items()]

    def open_read(self, name: str, listed: StoredObject | None = None) -> MemoryReadHandle:
        with self._lock:
            if name not in self._objects:
                raise NotFound(f"backup {name!r} not found")
            data, modified, version = self._objects[name]
        info = StoredObject(name, len(data), modified, f'"m{version}"')
        return MemoryReadHandle(data, info, info.etag)

    def open_write(self, name: str) -> MemoryWriter:
        with self._lock:
            if name in self._objects:
                raise Conflict(f"backup {name!r} already exists")
            if name in self._writing:
                raise Conflict(f"backup {name!r} is already being written")
            self._writing.add(name)
        return MemoryWriter(self, name)

    def put(self, name: str, data: bytes) -> None:
        with self._lock:
            self._version += 1
            self._objects[name] = (bytes(data), self._clock(), self._version)

    def delete(self, name: str) -> None:
        with self._lock:
            self._version += 1
            if self._objects.pop(name, None) is None:
                raise NotFound(f"backup {name!r} not found")

    def changed_elsewhere(self) -> None:
        pass  # the version is read from the store itself each time

    def version(self) -> object | None:
        with self._lock:
            return (self._version, len(self._objects))

    def free_bytes(self) -> int | None:
        return None

    def check(self) -> str:
        return "in memory"

    def remove_partials(
        self,
        keep: frozenset[str] = frozenset(),
        older_than: float = 0.0,
        dead: frozenset[str] = frozenset(),
    ) -> builtins.list[str]:
        return []  # nothing survives a restart of a process-local store

    def _finish(self, name: str, data: bytes | None) -> None:
        with self._lock:
            self._writing.discard(name)
            if data is not None:
                if name in self._objects:
                    raise Conflict(f"backup {name!r} already exists")
                self._version += 1
                self._objects[name] = (data, self._clock(), self._version)


class MemoryReadHandle:
    def __init__(self, data: bytes, info: StoredObject, etag: str) -> None:
        self._data = data
        self.info = info
        self.etag = etag

    def read(self, offset: int, size: int) -> bytes:
        chunk = self._data[offset : offset + size]
        if not chunk:
            raise StorageError(f"read past the end of {self.info.name!r}")
        READS.count("memory", len(chunk))
        return chunk

    def read_cached(self, offset: int, size: int) -> bytes | None:
        return self.read(offset, size)

    def iter_range(self, start: int, end: int) -> Iterator[bytes]:
        for offset in range(start, end, CHUNK_SIZE):
            yield self._data[offset : min(offset + CHUNK_SIZE, end)]

    def close(self) -> None:
        pass


class MemoryWriter:
    def __init__(self, storage: MemoryStorage, name: str) -> None:
        self._storage = storage
        self._name = name
        self._chunks: list[bytes] = []
        self._done = False
        self.bytes_written = 0

    def write(self, chunk: bytes) -> None:
        self._chunks.append(bytes(chunk))
        self.bytes_written += len(chunk)

    def commit(self) -> None:
        self._done = True
        self._storage._finish(self._name, b"".join(self._chunks))

    def __enter__(self) -> MemoryWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if not self._done:
            self._storage._finish(self._name, None)
