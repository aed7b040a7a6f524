"""Deleting a backup from every store that holds it: its pending copies cancelled, a
signed tombstone left in the primary store (kept 30 days) so the copy fallback never
serves a deleted name, then each store's objects removed, each removal audited. A store
that cannot be reached leaves the delete partial (PartlyDeleted), never reported done.

A tombstone is the primary's `<name>.deleted`: JSON naming the backup, its target and
prefix, signed with the signing key; one that is missing or not signed counts for
nothing (a primary that merely lost an object still falls back to a sound copy).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from pgkeep import formats
from pgkeep.core.catalog import Catalog
from pgkeep.core.events import Actor
from pgkeep.core.signing import Verdict
from pgkeep.errors import (
    NotFound,
    PartlyDeleted,
    PgkeepError,
    StorageError,
    Unavailable,
)

logger = logging.getLogger(__name__)
SUFFIX = ".deleted"
KEEP = timedelta(days=30)


def delete_everywhere(
    primary: Catalog,
    copies: list[tuple[str, Catalog]],
    name: str,
    actor: Actor,
    now: Callable[[], datetime],
    cancel_copy: Callable[[str], None] = lambda name: None,
) -> list[str]:
    """Remove `name` from the primary and every copy store; the stores it was removed
    from. NotFound when no store has it; PartlyDeleted naming a store it is still in."""
    holders = _holders(primary, copies, name)  # InvalidInput, NotFound: nothing cancelled
    if name in primary.pinned():
        primary.delete(name, actor)  # refused (Conflict: pinned), and audited as such
    _write_tombstone(primary, name, actor, now())
    cancel_copy(name)  # a copy landing after this is taken back (the tombstone says so)
    removed: list[str] = []
    failed: list[str] = []
    for store, catalog in holders:
        try:
            catalog.delete(name, actor)
            removed.append(store)
        except NotFound:
            continue
        except PgkeepError as exc:
            if store != "primary":
                failed.append(f"not removed from {store}: {exc.message}")
                continue
            # Refused in the primary (its audit entry could not be written, say): nothing
            # was deleted, and the copies are not to be treated as deleted either.
            _remove_tombstone(primary, name)
            cancel_copy("")  # (the copier forgets its last cancel: see Copier.cancel)
            raise
    _prune(primary, [c for _, c in copies], now())
    if failed:
        raise PartlyDeleted("backup partly deleted", "; ".join(failed), removed)
    return removed


def _holders(
    primary: Catalog, copies: list[tuple[str, Catalog]], name: str
) -> list[tuple[str, Catalog]]:
    holders: list[tuple[str, Catalog]] = []
    for store, catalog in [("primary", primary), *((f"copy:{s}", c) for s, c in copies)]:
        try:
            catalog.get(name)  # InvalidInput for a name no backup can have
        except NotFound:
            continue
        except (StorageError, Unavailable):
            pass  # cannot tell now: try to remove it, and say so if that fails
        holders.append((store, catalog))
    if not holders:
        raise NotFound(f"backup {name[:200]!r} not found")
    return holders


def _document(primary: Catalog, name: str) -> dict[str, str]:
    return {"name": name, "target": primary.target, "prefix": primary.prefix or ""}


def _write_tombstone(primary: Catalog, name: str, actor: Actor, at: datetime) -> None:
    document: dict[str, object] = {
        **_document(primary, name),
        "deletedAt": formats.iso_ms(at),
        "deletedBy": actor.who,
    }
    document["signature"] = primary.manifests.signer.sign(document)
    primary.storage.put(name + SUFFIX, json.dumps(document).encode())


def _held(copy: Catalog, name: str) -> bool:
    try:
        copy.get(name)
    except NotFound:
        return False
    except PgkeepError:
        return True  # cannot tell: keep the tombstone
    return True


def _remove_tombstone(primary: Catalog, name: str) -> None:
    try:
        primary.storage.delete(name + SUFFIX)
    except PgkeepError as exc:
        logger.error("tombstone of %s left after a refused delete: %s", name, exc.message)


def tombstoned(primary: Catalog, name: str) -> bool:
    """Whether the primary holds this service's signed tombstone for `name`."""
    try:
        handle = primary.storage.open_read(name + SUFFIX)
    except NotFound:
        return False
    try:
        raw = handle.read(0, max(1, handle.info.size_bytes)) if handle.info.size_bytes else b""
    finally:
        handle.close()
    try:
        document = json.loads(raw)
        signature = document.pop("signature")
    except (ValueError, AttributeError, KeyError):
        return False
    signed = primary.manifests.signer.check(document, signature) is Verdict.GOOD
    expected = _document(primary, name)
    return signed and all(document.get(k) == v for k, v in expected.items())


def _prune(primary: Catalog, copies: list[Catalog], now: datetime) -> None:
    """Tombstones older than 30 days are dropped (best effort), except one whose backup a
    copy store still holds (a partial delete): it would be served again."""
    try:
        for obj in primary.storage.list():
            if not obj.name.endswith(SUFFIX) or obj.modified_at >= now - KEEP:
                continue
            name = obj.name[: -len(SUFFIX)]
            if any(_held(copy, name) for copy in copies):
                continue
            primary.storage.delete(obj.name)
    except PgkeepError as exc:
        logger.warning("old tombstones not pruned in %s: %s", primary.storage.where, exc.message)
