"""The store's marker: which control database the instances sharing this store use.

`pgkeep-control.json` at the store's root holds the control database's random id and,
for messages, where it is. The first instance with a control database writes it; an
instance pointed at another control database, or at none, refuses to start.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from pgkeep.core.ports import Storage
from pgkeep.errors import NotFound, StorageError

MARKER = "pgkeep-control.json"


@dataclass(frozen=True)
class Marker:
    id: str
    database: str  # host:port/dbname, never a password


def read(storage: Storage) -> Marker | None:
    try:
        handle = storage.open_read(MARKER)
    except NotFound:
        return None
    try:
        data = json.loads(b"".join(handle.iter_range(0, handle.info.size_bytes)))
        return Marker(str(data["controlId"]), str(data["controlDatabase"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise StorageError(f"{MARKER} in {storage.where} is unreadable: {exc}") from None
    finally:
        handle.close()


def write(storage: Storage, marker: Marker) -> None:
    body = {"controlId": marker.id, "controlDatabase": marker.database}
    storage.put(MARKER, json.dumps(body).encode() + b"\n")
