"""Copies standing in for the primary store: only a copy whose manifest this service signed.
A copy store's writer holds no signing key, so a copy with an unsigned manifest (as 0.1.0
wrote them: anyone can write one matching any bytes) never stands in for a damaged primary,
in a restore or a verify, nor is downloaded for a lost one. The stores are in memory; the
restorer keeps its databases in memory and loads what it is given."""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, cast

import pytest

from pgkeep.core import deleting, manifests
from pgkeep.core.catalog import Catalog
from pgkeep.core.copying import Copier
from pgkeep.core.creating import Creating
from pgkeep.core.environment import Offers
from pgkeep.core.events import Actor, Events
from pgkeep.core.manifests import ManifestStore
from pgkeep.core.models import Compression, DroppedForeignKey, Trust
from pgkeep.core.proving import Proving, Restorers
from pgkeep.core.restore_plan import LOADER
from pgkeep.core.retention import RetentionPolicy
from pgkeep.core.runner import JobRunner
from pgkeep.core.service import BackupService
from pgkeep.core.signing import Signer
from pgkeep.errors import Corrupt, NotFound
from pgkeep.storage import MemoryStorage
from tests.core.test_manifests import MANIFEST
from tests.core.test_planning import DUMP, _plan

NAME = "backup-2025-05-06T07-08-09.sql"
SIGNER = Signer(b"s" * 32)
ACTOR = Actor("tester", "cli")
GOOD = DUMP.encode()
HOSTILE = DUMP.replace("CREATE INDEX t_i ON t (a);", "COPY (SELECT 1) TO PROGRAM 'id';").encode()


def _clock() -> datetime:
    return datetime.now(UTC)


class _Session:
    bare = False

    def __init__(self, loaded: list[bytes]) -> None:
        self._loaded = loaded

    def run_sql(self, role: str, chunks: Iterable[bytes], owner: str = "") -> None:
        self._loaded.append(b"".join(chunks))

    def resolve(self, owner: str) -> str:
        return LOADER

    def archive(self, chunks: Iterable[bytes], size_hint: int, imported: bool = False) -> Any:
        raise AssertionError("a plain dump")


class MemoryRestorer:
    """Databases kept in memory: each holds the runs loaded into it."""

    server = "memory"

    def __init__(self) -> None:
        self.databases_: dict[str, list[bytes]] = {}
        self.loaded: list[bytes] = []  # every run given to any database

    def exists(self, database: str) -> bool:
        return database in self.databases_

    def create(self, database: str, owner: str = "") -> None:
        self.databases_[database] = []

    def drop(self, database: str) -> None:
        self.databases_.pop(database, None)

    def rename(self, old: str, new: str) -> None:
        self.databases_[new] = self.databases_.pop(old)

    def give(self, database: str, owner: str) -> bool:
        return True

    def row_counts(self, database: str) -> dict[str, int]:
        return {}

    def offers(self, roles: Iterable[str]) -> Offers:
        return Offers(self.server, 18, {}, frozenset(roles))

    @contextmanager
    def session(
        self, database: str, archive_major: int, job: str, bare: bool = False
    ) -> Iterator[_Session]:
        runs: list[bytes] = []
        yield _Session(runs)
        self.loaded += runs
        self.databases_[database] += runs

    def databases(self, prefix: str) -> list[str]:
        return [name for name in self.databases_ if name.startswith(prefix)]

    def loaders(self) -> list[str]:
        return []

    def drop_loader(self, role: str) -> None:
        pass

    def sweep_staged(self) -> list[str]:
        return []

    def check_archive(self, archive_major: int, chunks: Iterable[bytes], size_hint: int = 0) -> str:
        return "read"

    def check_import(self, chunks: Iterable[bytes], size_hint: int) -> None:
        pass

    def trim(
        self, database: str, tables: frozenset[str], schemas: tuple[str, ...]
    ) -> list[DroppedForeignKey]:
        raise AssertionError("no table-level restore here")


def _store(data: bytes, *, signed: bool) -> MemoryStorage:
    """A store holding `data` as NAME, with a manifest whose sha256 is the data's: signed by
    this service, or unsigned, exactly as 0.1.0 wrote manifests."""
    manifest = replace(
        MANIFEST,
        name=NAME,
        compression=Compression.NONE,
        size_bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        restrict_key="K1",
        row_counts=None,
        plan=_plan(data.decode())[0],
    )
    document = json.loads(manifests.to_json(manifest, SIGNER))
    if not signed:
        document = {k: v for k, v in document.items() if k in manifests.LEGACY_KEYS}
        document["schemaVersion"] = 1
    storage = MemoryStorage()
    storage.put(NAME, data)
    storage.put(NAME + ".json", json.dumps(document).encode())
    return storage


def _catalog(target: str, storage: MemoryStorage) -> Catalog:
    events = Events(_clock)
    store = ManifestStore(storage, SIGNER)
    return Catalog(target, "shop", storage, store, events, RetentionPolicy(), _clock)


def _damaged() -> MemoryStorage:
    """The primary: signed, then its bytes flipped (same size)."""
    storage = _store(GOOD, signed=True)
    storage.put(NAME, GOOD.replace(b"CREATE TABLE", b"CREATE TABLX"))
    return storage


def _proving(primary: MemoryStorage, copy: MemoryStorage) -> tuple[Proving, MemoryRestorer]:
    restorer = MemoryRestorer()
    copies = [("second", _catalog("shop@second", copy))]
    restorers = Restorers(target=restorer, scratch=restorer)
    proving = Proving(_catalog("shop", primary), restorers, Events(_clock), _clock, copies=copies)
    return proving, restorer


def test_a_signed_copy_stands_in_for_a_damaged_primary() -> None:
    """The counterpart of the tests below: the same set-up, the copy signed, is used."""
    proving, restorer = _proving(_damaged(), _store(GOOD, signed=True))
    result = proving.restore(NAME, "shop_restored", actor=ACTOR)
    assert result.source == "copy:second"
    assert b"".join(restorer.databases_["shop_restored"]).count(b"CREATE TABLE public.t") == 1
    verified = proving.verify(NAME, restore=True, actor=ACTOR)
    assert (verified.verified, verified.source) == (True, "copy:second")


def test_an_unsigned_copy_never_stands_in_for_a_damaged_primary_in_a_restore() -> None:
    copy = _store(HOSTILE, signed=False)
    proving, restorer = _proving(_damaged(), copy)
    assert proving.copies[0][1].get(NAME).trust is Trust.UNSIGNED
    with pytest.raises(Corrupt) as caught:
        proving.restore(NAME, "shop_restored", actor=ACTOR)
    assert (
        caught.value.message == f"backup {NAME!r} failed its integrity check; nothing was restored"
    )
    assert "copy:" not in caught.value.details  # the copy was never tried
    assert not any(b"TO PROGRAM" in run for run in restorer.loaded)
    assert restorer.databases_ == {}  # the staging database dropped, nothing restored


def test_an_unsigned_copy_never_stands_in_for_a_damaged_primary_in_a_verify() -> None:
    proving, restorer = _proving(_damaged(), _store(HOSTILE, signed=False))
    for restore in (False, True):
        verified = proving.verify(NAME, restore=restore, actor=ACTOR)
        assert (verified.verified, verified.source) == (False, "primary")
    assert not any(b"TO PROGRAM" in run for run in restorer.loaded)


def _service(primary: MemoryStorage, copy: MemoryStorage) -> BackupService:
    proving, _ = _proving(primary, copy)
    copier = Copier(proving.catalog, proving.copies, Events(_clock))
    # A download uses the catalog and the copies alone: no dumps, no jobs.
    return BackupService(
        proving.catalog, cast(Creating, None), proving, cast(JobRunner, None), copier=copier
    )


def _lost() -> MemoryStorage:
    return MemoryStorage()


def test_a_signed_copy_is_downloaded_for_a_lost_primary_checked_as_it_streams() -> None:
    download = _service(_lost(), _store(GOOD, signed=True)).open(NAME, ACTOR)
    assert download.source == "copy:second"
    assert download.reading is not None
    assert b"".join(download.reading.stored()) == GOOD


def test_an_unsigned_copy_is_never_downloaded_for_a_lost_primary() -> None:
    service = _service(_lost(), _store(HOSTILE, signed=False))
    with pytest.raises(NotFound, match=f"backup {NAME!r} not found"):
        service.open(NAME, ACTOR)


def _deleted(primary: MemoryStorage, *, forged: bool = False) -> MemoryStorage:
    """The primary after a delete: its objects gone, its signed tombstone left (or one
    written by someone without the signing key)."""
    catalog = _catalog("shop", primary)
    deleting._write_tombstone(catalog, NAME, ACTOR, _clock())
    if forged:
        document = json.loads(primary.open_read(NAME + deleting.SUFFIX).read(0, 10**6))
        document["signature"] = Signer(b"f" * 32).sign(document)
        primary.put(NAME + deleting.SUFFIX, json.dumps(document).encode())
    for name in (NAME, NAME + ".json"):
        with contextlib.suppress(NotFound):
            primary.delete(name)
    return primary


def test_a_deleted_backup_is_never_served_from_a_copy() -> None:
    """Its signed tombstone in the primary: a copy the delete could not reach stays unused."""
    service = _service(_deleted(_lost()), _store(GOOD, signed=True))
    with pytest.raises(NotFound, match=f"backup {NAME!r} not found"):
        service.open(NAME, ACTOR)
    proving, restorer = _proving(_deleted(_damaged()), _store(GOOD, signed=True))
    assert list(proving.sound_copies(NAME)) == []
    assert restorer.databases_ == {}


def test_a_tombstone_not_signed_here_counts_for_nothing() -> None:
    """A primary that merely lost a backup (or holds a forged tombstone) still falls back."""
    service = _service(_deleted(_lost(), forged=True), _store(GOOD, signed=True))
    assert service.open(NAME, ACTOR).source == "copy:second"
    proving, _ = _proving(_deleted(_damaged(), forged=True), _store(GOOD, signed=True))
    assert [store for store, _, _ in proving.sound_copies(NAME)] == ["second"]
