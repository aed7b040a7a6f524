"""age encryption (age-encryption.org/v1) of the stored bytes: keys, and reading, streamed.

The stored bytes of an encrypted backup are a standard age file: `age -d -i key.txt`
opens it without pgkeep. They are written by age_writer.py (OpenSSL's primitives) and
read here with pyrage (the Rust `age` crate), which reads file-like objects on its
own; `_Pump` runs it on a thread and feeds it chunk by chunk, so it fits the byte
chain like a decompressor: `process(chunk)` gives what is ready, `finish()` the rest.
At most `DEPTH` chunks wait for it, so memory stays bounded.

Keys: recipients (`age1…`, public) encrypt; identities (`AGE-SECRET-KEY-1…`,
private) decrypt. A manifest records only each recipient's fingerprint.
"""

from __future__ import annotations

import hashlib
import io
import queue
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyrage

from pgkeep.core import age_writer
from pgkeep.errors import Corrupt, NoIdentity, PgkeepError

DEPTH = 4  # chunks queued for the age thread
BUFFER = 1024 * 1024  # what pyrage's small reads are served from
SUFFIX = ".age"
FORMAT = "age"
HEADER_LINE = b"age-encryption.org/v1\n"
_STANZA = re.compile(rb"-> [\x21-\x7e]+( [\x21-\x7e]+)*\n")
_BODY_LINE = re.compile(rb"[A-Za-z0-9+/]{0,64}\n")
_MAC = re.compile(rb"--- [A-Za-z0-9+/]{43}\n")
MAX_HEADER = 64 * 1024


def fingerprint(recipient: str) -> str:
    """A recipient's short, stable name: never the key itself. Of its canonical, lower-case
    form: bech32 ignores case, so `AGE1…` and `age1…` are one key and one name."""
    return _digest(recipient.strip().lower())


def _digest(text: str) -> str:
    return "age:" + hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Keys:
    """Recipients new backups are encrypted to; identities that open backups."""

    recipients: tuple[str, ...] = ()
    identities: tuple[Any, ...] = ()  # pyrage.x25519.Identity: never logged, never stored

    @property
    def encrypts(self) -> bool:
        return bool(self.recipients)

    def fingerprints(self) -> tuple[str, ...]:
        return tuple(fingerprint(r) for r in self.recipients)

    def opens(self) -> frozenset[str]:
        """The fingerprints of the recipients the identities can open."""
        return frozenset(fingerprint(str(i.to_public())) for i in self.identities)

    def can_open(self, fingerprints: tuple[str, ...]) -> bool:
        # Manifests written before fingerprints were of the lower-case form name an
        # `AGE1…` recipient by its upper-case text: those backups open too.
        upper = {_digest(str(i.to_public()).upper()) for i in self.identities}
        return bool((self.opens() | upper) & set(fingerprints))


NO_KEYS = Keys()


def parse_recipient(text: str) -> str:
    """An `age1…` public key, checked, in its canonical lower-case form (`AGE1…` is the
    same key: `age -r` takes either); ValueError naming what is wrong (not the key)."""
    value = text.strip()
    if value.upper().startswith("AGE-SECRET-KEY-"):
        raise ValueError("a private key (AGE-SECRET-KEY-…) is not a recipient")
    try:
        pyrage.x25519.Recipient.from_str(value)
        age_writer.recipient_key(value)  # what the writer will use: both must agree
    except Exception as exc:  # pyrage raises its own RecipientError
        raise ValueError(f"not an age recipient (age1…): {type(exc).__name__}") from None
    return value.lower()


def parse_identities(text: str) -> tuple[Any, ...]:
    """The `AGE-SECRET-KEY-1…` lines of an identity file (comments and blanks skipped)."""
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            found.append(pyrage.x25519.Identity.from_str(line))
        except Exception:
            raise ValueError(f"line {number} is not an age identity (AGE-SECRET-KEY-1…)") from None
    if not found:
        raise ValueError("holds no age identity (AGE-SECRET-KEY-1…)")
    return tuple(found)


def no_identity(fingerprints: tuple[str, ...]) -> NoIdentity:
    """The backup is encrypted to recipients none of the configured identities opens."""
    return NoIdentity(
        f"no identity for recipients {', '.join(fingerprints) or '(none recorded)'}",
        "set PGKEEP_AGE_IDENTITY_FILE to a file holding one of their private keys",
    )


class _Pump:
    """pyrage's pull-based `*_io` on a thread, fed by `process` and drained by it."""

    def __init__(self, run: Callable[[io.BufferedIOBase, io.RawIOBase], None]) -> None:
        self._in: queue.Queue[bytes | None] = queue.Queue(DEPTH)
        self._out: list[bytes] = []
        self._lock = threading.Lock()
        self._error: BaseException | None = None
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(run,), name="age", daemon=True)
        self._thread.start()

    def _run(self, run: Callable[[io.BufferedIOBase, io.RawIOBase], None]) -> None:
        try:
            # Buffered: pyrage reads 8 KiB at a time, and each raw read is a Python call.
            source = io.BufferedReader(_Source(self._in, self._closed), BUFFER)
            run(source, _Sink(self._out, self._lock))
        except BaseException as exc:
            self._error = exc

    def process(self, chunk: bytes) -> bytes:
        if chunk:
            self._put(chunk)
        return self._drain()

    def finish(self) -> bytes:
        self._put(None)
        self._thread.join()
        self._raise()
        return self._drain()

    def close(self) -> None:
        """Stop the thread early (a consumer that gave up); safe to call twice."""
        self._closed.set()
        self._thread.join(timeout=10)

    def _put(self, item: bytes | None) -> None:
        while True:
            self._raise()
            if not self._thread.is_alive():
                self._raise()
                raise Corrupt("the age stream ended early")
            try:
                self._in.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _drain(self) -> bytes:
        with self._lock:
            out, self._out[:] = b"".join(self._out), []
        return out

    def _raise(self) -> None:
        if self._error is not None:
            raise self._translate(self._error)

    def _translate(self, error: BaseException) -> PgkeepError:
        if isinstance(error, PgkeepError):
            return error
        return Corrupt(f"age data is damaged: {error}".strip(": "))


class _Source(io.RawIOBase):
    """What pyrage reads: the chunks fed so far, blocking for the next; end at None."""

    def __init__(self, chunks: queue.Queue[bytes | None], closed: threading.Event) -> None:
        super().__init__()
        self._chunks = chunks
        self._closed = closed
        self._current = memoryview(b"")
        self._ended = False

    def readable(self) -> bool:
        return True

    def readinto(self, target: Any) -> int:
        while not self._current and not self._ended:
            try:
                item = self._chunks.get(timeout=0.1)
            except queue.Empty:
                if self._closed.is_set():
                    raise OSError("abandoned") from None
                continue
            if item is None:
                self._ended = True
            else:
                self._current = memoryview(item)
        n = min(len(target), len(self._current))
        target[:n] = self._current[:n]
        self._current = self._current[n:]
        return n


class _Sink(io.RawIOBase):
    def __init__(self, out: list[bytes], lock: threading.Lock) -> None:
        super().__init__()
        self._out = out
        self._lock = lock

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        with self._lock:
            self._out.append(bytes(data))
        return len(data)


class Decryptor(_Pump):
    def __init__(self, keys: Keys, fingerprints: tuple[str, ...]) -> None:
        if not keys.can_open(fingerprints):
            raise no_identity(fingerprints)
        self._fingerprints = fingerprints
        identities = list(keys.identities)
        super().__init__(lambda src, dst: pyrage.decrypt_io(src, dst, identities))

    def _translate(self, error: BaseException) -> PgkeepError:
        if isinstance(error, pyrage.DecryptError) and "No matching keys" in str(error):
            return no_identity(self._fingerprints)
        return super()._translate(error)


class HeaderCheck:
    """Without an identity: the bytes pass through, and the age header is checked for form
    (version line, recipient stanzas, MAC line). The MAC itself needs the file key."""

    def __init__(self) -> None:
        self._head = b""
        self._done = False
        self._payload = 0

    def process(self, chunk: bytes) -> bytes:
        if self._done:
            self._payload += len(chunk)
            return b""
        self._head += chunk
        end = self._head.find(b"\n---")
        if end < 0:
            if len(self._head) > MAX_HEADER:
                raise Corrupt("no age header: its end was not found")
            return b""
        line_end = self._head.find(b"\n", end + 1)
        if line_end < 0:
            return b""
        header, rest = self._head[: line_end + 1], self._head[line_end + 1 :]
        check_header(header)
        self._done, self._head, self._payload = True, b"", len(rest)
        return b""

    def finish(self) -> bytes:
        if not self._done:
            raise Corrupt("no age header: the data ends before it does")
        if self._payload < 16 + 16:  # nonce, and at least one chunk's tag
            raise Corrupt("the age payload is truncated")
        return b""


def check_header(header: bytes) -> None:
    """The form of an age v1 header: raises Corrupt naming what is wrong."""
    if not header.startswith(HEADER_LINE):
        raise Corrupt("not an age file: the first line is not age-encryption.org/v1")
    lines = header[len(HEADER_LINE) :].splitlines(keepends=True)
    if not lines or not _MAC.fullmatch(lines[-1]):
        raise Corrupt("the age header has no valid MAC line")
    stanzas, in_stanza = 0, False
    for line in lines[:-1]:
        if _STANZA.fullmatch(line):
            stanzas, in_stanza = stanzas + 1, True
        elif in_stanza and _BODY_LINE.fullmatch(line):
            continue
        else:
            raise Corrupt("the age header has a malformed recipient stanza")
    if stanzas == 0:
        raise Corrupt("the age header names no recipient")
