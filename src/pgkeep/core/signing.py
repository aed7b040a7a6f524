"""Signing what pgkeep writes about backups: HMAC-SHA256 with a key kept outside the store.

A signature is `{"keyId", "hmac"}` over canonical JSON (sorted keys, no spaces).
The key id names the key without revealing it, so a manifest signed before a
rotation is checked with the old key (`PGKEEP_SIGNING_KEYS_OLD`) and one signed
by a key this service never had is told apart from one that was tampered with.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Sequence
from enum import StrEnum
from typing import Any

KEY_ID_BYTES = 8


class Verdict(StrEnum):
    GOOD = "good"
    UNSIGNED = "unsigned"
    UNKNOWN_KEY = "unknown key"
    BAD = "bad"


def hkdf(secret: bytes, info: bytes, length: int = 32) -> bytes:
    """HKDF-SHA256 (RFC 5869) with an empty salt: one key per purpose from one secret."""
    prk = hmac.new(b"\0" * 32, secret, hashlib.sha256).digest()
    out, block = b"", b""
    for counter in range(1, -(-length // 32) + 1):
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        out += block
    return out[:length]


def key_id(key: bytes) -> str:
    return hashlib.sha256(b"pgkeep key id\0" + key).hexdigest()[: KEY_ID_BYTES * 2]


def canonical(document: dict[str, Any]) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


class Signer:
    """Signs with the current key; checks with it and any older ones."""

    def __init__(self, current: bytes, old: Sequence[bytes] = ()) -> None:
        if len(current) < 32:
            raise ValueError("a signing key needs at least 32 bytes")
        self._current = current
        self.key_id = key_id(current)
        self._keys = {key_id(k): k for k in (*old, current)}

    def sign(self, document: dict[str, Any]) -> dict[str, str]:
        return {"keyId": self.key_id, "hmac": self._mac(self._current, document)}

    def check(self, document: dict[str, Any], signature: object) -> Verdict:
        """Whether `signature` is this service's over `document` (without the signature)."""
        if signature is None:
            return Verdict.UNSIGNED
        if not isinstance(signature, dict):
            return Verdict.BAD
        key = self._keys.get(str(signature.get("keyId")))
        if key is None:
            return Verdict.UNKNOWN_KEY
        given = str(signature.get("hmac", ""))
        good = hmac.compare_digest(given.encode(), self._mac(key, document).encode())
        return Verdict.GOOD if good else Verdict.BAD

    def derive(self, purpose: str) -> Signer:
        """A signer for another purpose (the audit chain), from the same keys, never the same."""

        def sub(key: bytes) -> bytes:
            return hmac.new(key, b"pgkeep derive\0" + purpose.encode(), hashlib.sha256).digest()

        old = [sub(k) for k in self._keys.values() if k is not self._current]
        return Signer(sub(self._current), old)

    def secret(self, purpose: str) -> bytes:
        """A key for another purpose (download tickets), derived from the current key: every
        instance with the same signing key derives the same one."""
        return hmac.new(
            self._current, b"pgkeep secret\0" + purpose.encode(), hashlib.sha256
        ).digest()

    @staticmethod
    def _mac(key: bytes, document: dict[str, Any]) -> str:
        return hmac.new(key, canonical(document), hashlib.sha256).hexdigest()
