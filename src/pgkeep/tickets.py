"""Download tickets: short-lived, single-use, HMAC-signed permissions to download one backup.

A browser download link carries a ticket instead of the long-lived JWT. The key
is random per process, so a ticket works only on the process that issued it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections.abc import Callable

from pgkeep.errors import AuthError

TICKET_TTL_SECONDS = 60


class TicketIssuer:
    def __init__(
        self, clock: Callable[[], float] = time.time, ttl: int = TICKET_TTL_SECONDS
    ) -> None:
        self._key = secrets.token_bytes(32)
        self._clock = clock
        self._ttl = ttl
        self._used: dict[str, float] = {}
        self._lock = threading.Lock()

    def issue(self, filename: str, sub: str) -> tuple[str, float]:
        """A ticket for `filename`, and when it expires (epoch seconds)."""
        expires = self._clock() + self._ttl
        payload = json.dumps({"f": filename, "s": sub, "e": expires, "n": secrets.token_hex(12)})
        body = _b64(payload.encode())
        return f"{body}.{_b64(self._sign(body))}", expires

    def redeem(self, ticket: str, filename: str) -> str:
        """Use a ticket for `filename`; returns whom it was issued to, else AuthError."""
        body, _, signature = ticket.partition(".")
        try:
            good = hmac.compare_digest(_unb64(signature), self._sign(body))
            claims = json.loads(_unb64(body)) if good else None
        except ValueError:
            claims = None
        if not isinstance(claims, dict):
            raise AuthError("invalid download ticket", "ask for a new download link")
        now = self._clock()
        if claims.get("f") != filename:
            raise AuthError("invalid download ticket", "the ticket is for another backup")
        if float(claims.get("e", 0)) < now:
            raise AuthError("expired download ticket", "ask for a new download link")
        with self._lock:
            self._used = {n: e for n, e in self._used.items() if e >= now}
            if claims["n"] in self._used:
                raise AuthError("used download ticket", "a ticket works once; ask for a new link")
            self._used[claims["n"]] = float(claims["e"])
        return str(claims.get("s", ""))

    def _sign(self, body: str) -> bytes:
        return hmac.new(self._key, body.encode(), hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
