"""Writing age files (age-encryption.org/v1, X25519 recipients) with OpenSSL's primitives.

Why not pyrage here: its ChaCha20-Poly1305 runs at about a quarter of OpenSSL's
(measured in docs/benchmarks-encryption.md), and on a create that cost lands on the
dump's own critical path. Only the framing is ours, and it is the specification's:
a header of one X25519 stanza per recipient and an HMAC, then the payload as a STREAM
of 64 KiB ChaCha20-Poly1305 chunks. Reading stays with pyrage (the reference crate),
so every file written here is proven against another implementation by the tests,
and against the `age` command too.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from pgkeep.errors import InvalidInput

CHUNK = 64 * 1024  # the STREAM's plaintext chunk (the specification's, fixed)
_BECH32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_X25519_INFO = b"age-encryption.org/v1/X25519"


def recipient_key(recipient: str) -> bytes:
    """The 32-byte X25519 public key of an `age1…` recipient (bech32, checksum checked)."""
    hrp, data = _bech32_decode(recipient.strip().lower())
    key = _regroup(data, 5, 8)
    if hrp != "age" or key is None or len(key) != 32:
        raise InvalidInput("not an age X25519 recipient (age1…)")
    try:  # OpenSSL refuses a low-order point: a file key wrapped to it would be anyone's
        X25519PrivateKey.generate().exchange(X25519PublicKey.from_public_bytes(key))
    except ValueError:
        raise InvalidInput("not a usable X25519 key (a low-order point)") from None
    return key


class AgeWriter:
    """Plaintext in, an age file out: `process(chunk)` gives what is ready, `finish()` the
    rest. At most one chunk is held back (the last one is flagged as last)."""

    def __init__(self, recipients: tuple[str, ...]) -> None:
        if not recipients:
            raise InvalidInput("an age file needs at least one recipient")
        file_key = os.urandom(16)
        self._header: bytes | None = _header(file_key, [recipient_key(r) for r in recipients])
        nonce = os.urandom(16)
        self._aead = ChaCha20Poly1305(_hkdf(file_key, nonce, b"payload"))
        self._nonce = nonce
        self._pending = bytearray()
        self._counter = 0

    def process(self, chunk: bytes) -> bytes:
        out = [self._start()]
        self._pending += chunk
        # Keep at least one byte back: only `finish` knows which chunk is the last.
        while len(self._pending) > CHUNK:
            out.append(self._seal(bytes(self._pending[:CHUNK]), last=False))
            del self._pending[:CHUNK]
        return b"".join(out)

    def finish(self) -> bytes:
        start = self._start()
        last = self._seal(bytes(self._pending), last=True)
        self._pending.clear()
        return start + last

    def close(self) -> None:
        """Nothing runs beside it (no thread): here for the chain's codec interface."""

    def _start(self) -> bytes:
        if self._header is None:
            return b""
        header, self._header = self._header, None
        return header + self._nonce

    def _seal(self, plain: bytes, *, last: bool) -> bytes:
        nonce = self._counter.to_bytes(11, "big") + (b"\x01" if last else b"\x00")
        self._counter += 1
        return self._aead.encrypt(nonce, plain, None)


def _header(file_key: bytes, recipients: list[bytes]) -> bytes:
    lines = [b"age-encryption.org/v1\n"]
    for public in recipients:
        ephemeral = X25519PrivateKey.generate()
        share = ephemeral.public_key().public_bytes_raw()
        shared = ephemeral.exchange(X25519PublicKey.from_public_bytes(public))
        wrap = ChaCha20Poly1305(_hkdf(shared, share + public, _X25519_INFO))
        body = wrap.encrypt(b"\x00" * 12, file_key, None)
        lines.append(b"-> X25519 " + _b64(share) + b"\n" + _b64(body) + b"\n")
    head = b"".join(lines) + b"---"
    mac = hmac.new(_hkdf(file_key, b"", b"header"), head, hashlib.sha256).digest()
    return head + b" " + _b64(mac) + b"\n"


def _hkdf(secret: bytes, salt: bytes, info: bytes) -> bytes:
    return HKDF(hashes.SHA256(), 32, salt, info).derive(secret)


def _b64(data: bytes) -> bytes:
    """Unpadded base64; every body here is under 48 bytes, so one line (< 64 columns)."""
    return base64.b64encode(data).rstrip(b"=")


def _bech32_decode(text: str) -> tuple[str, list[int]]:
    hrp, sep, rest = text.rpartition("1")
    if not sep or not hrp or len(rest) < 6 or any(c not in _BECH32 for c in rest):
        raise InvalidInput("not an age X25519 recipient (age1…)")
    data = [_BECH32.index(c) for c in rest]
    if _polymod([ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp] + data) != 1:
        raise InvalidInput("not an age X25519 recipient (age1…): bad checksum")
    return hrp, data[:-6]


def _polymod(values: list[int]) -> int:
    generators = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
    checksum = 1
    for value in values:
        top = checksum >> 25
        checksum = (checksum & 0x1FFFFFF) << 5 ^ value
        for i, generator in enumerate(generators):
            checksum ^= generator if (top >> i) & 1 else 0
    return checksum


def _regroup(data: list[int], source: int, target: int) -> bytes | None:
    """Bits regrouped from `source`-bit to `target`-bit values; None for bad padding."""
    acc = bits = 0
    out = bytearray()
    for value in data:
        acc = (acc << source) | value
        bits += source
        while bits >= target:
            bits -= target
            out.append((acc >> bits) & ((1 << target) - 1))
    if bits >= source or (acc << (target - bits)) & ((1 << target) - 1):
        return None
    return bytes(out)
