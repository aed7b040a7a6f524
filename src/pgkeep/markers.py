"""The store's marker: which control database the instances sharing this store use.

`pgkeep-control.json` at the store's root holds the control database's random id and,
for messages, where it is. The first instance with a control database writes it; an
instance pointed at another control database, or at none, refuses to start.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from pgkeep.core.ports import ControlIdentity, Storage
from pgkeep.errors import ConfigError, NotFound, StorageError

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


def check(root: Storage, coordination: ControlIdentity | None) -> None:
    """Instances that share a store share a control database: the store says which.
    Written by the first instance with one; a mismatch, or none, stops the start."""
    found = read(root)
    if coordination is None:
        if found is not None:
            raise ConfigError(
                f"{root.where} is shared by instances through the control database "
                f"{found.database} ({MARKER}): set PGKEEP_CONTROL_DATABASE_URL to it"
            )
        return
    mine = Marker(coordination.control_id(), coordination.where)
    if found is None:
        write(root, mine)
    elif found.id != mine.id:
        raise ConfigError(
            f"{root.where} belongs to the control database {found.database}, not "
            f"{mine.database}: instances sharing a store must share a control database"
        )
