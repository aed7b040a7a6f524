"""The one reader: a backup's bytes read once from one store, pinned, checked as they pass.

Verify, restore, a download from a copy and a copy all read through a `Reading`:
it opens the version of the object the backup was found as (its etag: inode and
ctime on disk, `If-Match` on S3), hashes the stored bytes as they stream, and holds
back the last chunk until the sha256 matches the signed manifest, so whatever
consumes the bytes (psql, pg_restore's staging, a client, another store) never
gets the end of bytes that were not the ones signed: it gets `Corrupt` instead.
`content()` is the dump itself (decrypted, decompressed); `outcome` says what the
read found, for a verification to report.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from pgkeep.core import encryption, pipeline
from pgkeep.core.control import Control
from pgkeep.core.models import Backup, Check
from pgkeep.core.ports import Storage
from pgkeep.errors import Corrupt

MISMATCH = "does not match its manifest"


@dataclass(frozen=True)
class Outcome:
    """What one read found: the stored bytes' sha256, how much the dump held once decoded,
    why it did not decode (or ""), and whether it could be opened at all (encrypted, no key)."""

    sha256: str
    decoded_bytes: int
    problem: str
    opened: bool
    complete: bool  # read to the end (a read stopped early proves nothing)
    stopped: str = ""  # why it was not


class Reading:
    """One read of `backup` from `storage`; iterate `stored()` or `content()` once."""

    def __init__(
        self,
        storage: Storage,
        backup: Backup,
        keys: encryption.Keys = encryption.NO_KEYS,
        control: Control | None = None,
        on_bytes: Callable[[int], None] = lambda n: None,
    ) -> None:
        self.backup = backup
        self._storage = storage
        self._keys = keys
        self._control = control
        self._on_bytes = on_bytes
        self._digest = hashlib.sha256()
        self._decoded = 0
        self._problem = ""
        self._complete = False
        self._stored: Iterator[bytes] | None = None
        self._tail = b""  # the last chunk, held back from a consumer when the sha256 differs
        self._stopped = ""  # why the read stopped before the end
        self.opened = not backup.encrypted or keys.can_open(backup.recipients)

    @property
    def expected(self) -> str | None:
        manifest = self.backup.manifest
        return manifest.sha256 if manifest is not None else None

    def stored(self) -> Iterator[bytes]:
        """The stored bytes; the last chunk only once they match the manifest's sha256
        (Corrupt otherwise; with no manifest, nothing is held back)."""
        self._stored = self._stored_bytes()
        return self._stored

    def finish(self) -> Outcome:
        """Read (and hash) what its consumer left unread: a load that failed half way still
        says whether the bytes were the signed ones."""
        stored = self._stored if self._stored is not None else self.stored()
        try:
            for _ in stored:
                pass
        except Corrupt as exc:
            if not is_mismatch(exc, self.backup):
                raise
        except ValueError:
            pass  # the generator is running or closed: nothing more to read
        return self.outcome

    def _stored_bytes(self) -> Iterator[bytes]:
        backup, control = self.backup, self._control
        handle = self._storage.open_read(backup.name, backup.stored)
        try:
            if backup.stored is not None and handle.etag != backup.stored.etag:
                self._stopped = f"backup {backup.name!r} changed since it was checked"
                raise Corrupt(
                    self._stopped,
                    "it was replaced in the store while being verified or restored",
                )
            size = handle.info.size_bytes
            if control is not None:
                control.expected_bytes = size
            done, held = 0, b""
            for chunk in handle.iter_range(0, size):
                if control is not None:
                    control.check()
                self._digest.update(chunk)
                self._on_bytes(len(chunk))
                done += len(chunk)
                if control is not None:
                    control.report(bytes_written=done)
                if held:
                    yield held
                held = chunk
            self._complete = True
            self._tail = held
            self._check_digest()
            self._tail = b""
            if held:
                yield held
        finally:
            handle.close()

    def content(self) -> Iterator[bytes]:
        """The dump itself, decoded from `stored()`; decoding problems raise Corrupt."""
        decoder = pipeline.Decoder(pipeline.sealing(self.backup), self._keys)
        try:
            for chunk in self.stored():
                yield from self._decode(decoder.process, chunk)
            yield from self._decode(lambda _: decoder.finish(), b"")
        except Corrupt as exc:
            if is_mismatch(exc, self.backup) and not self._problem:
                # Never handed on, but decoded: whether they were readable is worth saying.
                self._swallow(decoder.process, self._tail)
                if not self._problem:
                    self._swallow(lambda _: decoder.finish(), b"")
            raise
        finally:
            decoder.close()

    def _decode(self, step: Callable[[bytes], Iterator[bytes]], chunk: bytes) -> Iterator[bytes]:
        try:
            for piece in step(chunk):
                self._decoded += len(piece)
                yield piece
        except Corrupt as exc:
            self._problem = self._problem or exc.message
            raise

    def inspect(self) -> Outcome:
        """Read everything once: decoded when an identity opens it, else (encrypted) its age
        header checked. Never raises for the backup's own faults: they are in the outcome,
        and the stored bytes are hashed to the end even when they stop decoding."""
        check: Callable[[bytes], object]
        finish: Callable[[], object]
        if self.opened:
            decoder = pipeline.Decoder(pipeline.sealing(self.backup), self._keys)
            check, finish, close = decoder.process, decoder.finish, decoder.close
        else:
            header = encryption.HeaderCheck()
            check, finish, close = header.process, header.finish, lambda: None
        try:
            for chunk in self.stored():
                if not self._problem:
                    self._swallow(check, chunk)
            if not self._problem:
                self._swallow(lambda _: finish(), b"")
        except Corrupt as exc:
            if not is_mismatch(exc, self.backup):
                raise
        finally:
            close()
        return self.outcome

    def _swallow(self, step: Callable[[bytes], object], chunk: bytes) -> None:
        try:
            out = step(chunk)
            if isinstance(out, Iterator):
                self._decoded += sum(len(piece) for piece in out)
        except Corrupt as exc:
            self._problem = exc.message

    @property
    def outcome(self) -> Outcome:
        return Outcome(
            self._digest.hexdigest(),
            self._decoded,
            self._problem,
            self.opened,
            self._complete,
            self._stopped,
        )

    def _check_digest(self) -> None:
        expected = self.expected
        found = self._digest.hexdigest()
        if expected is not None and found != expected:
            raise Corrupt(
                f"backup {self.backup.name!r} {MISMATCH}",
                f"sha256 is {found}, manifest says {expected}",
            )


def integrity_checks(backup: Backup, outcome: Outcome) -> list[Check]:
    """The sha256 and readability checks a read proves (or fails)."""
    manifest = backup.manifest
    if manifest is None:
        sha = Check("sha256", False, f"nothing to compare with: {backup.trust}")
    elif not outcome.complete:
        sha = Check("sha256", False, outcome.stopped or "not read to the end")
    elif outcome.sha256 == manifest.sha256:
        sha = Check("sha256", True, f"matches the manifest ({manifest.sha256[:12]}…)")
    else:
        sha = Check("sha256", False, f"is {outcome.sha256}, manifest says {manifest.sha256}")
    if outcome.problem:
        return [sha, Check("readable", False, outcome.problem)]
    if not outcome.opened:
        return [
            sha,
            Check(
                "readable",
                True,
                "read end to end; age header valid; not decrypted (no identity for "
                f"recipients {', '.join(backup.recipients)})",
            ),
        ]
    if outcome.decoded_bytes == 0:
        return [sha, Check("readable", False, "the backup holds no data")]
    what = "decompressed" if backup.stream_compression.value != "none" else "read"
    if backup.encrypted:
        what = "decrypted and " + what if what == "decompressed" else "decrypted"
    return [sha, Check("readable", True, f"{what} end to end: {outcome.decoded_bytes} bytes")]


def is_mismatch(exc: Corrupt, backup: Backup) -> bool:
    return exc.message.startswith(f"backup {backup.name!r} {MISMATCH}")
