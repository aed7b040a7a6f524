"""Download tickets: short-lived, single-use, HMAC-signed permissions to download one backup
of one target (two targets may hold backups of the same name).

A browser download link carries a ticket instead of the long-lived JWT. The key is
random per process, so a ticket works only on the process that issued it; instances
sharing a control database derive it from the signing key instead, and record each
redeemed ticket there (`redeem_once`), so a ticket works once, on any instance.
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
from datetime import UTC, datetime

from pgkeep.errors import AuthError

TICKET_TTL_SECONDS = 60


class TicketIssuer:
    def __init__(
        self,
        clock: Callable[[], float] = time.time,
        ttl: int = TICKET_TTL_SECONDS,
        *,
        key: bytes | None = None,
        redeem_once: Callable[[str, datetime], bool] | None = None,
    ) -> None:
        self._key = key or secrets.token_bytes(32)
        self._redeem_once = redeem_once
        self._clock = clock
        self._ttl = ttl
        self._used: dict[str, float] = {}
        self._lock = threading.Lock()

    def issue(self, target: str, filename: str, sub: str, key_id: str = "") -> tuple[str, float]:
        """A ticket for `filename` of `target`, and when it expires (epoch seconds); with
        `key_id`, asked for by that API key (checked again when the ticket is used)."""
        expires = self._clock() + self._ttl
        claims = {"t": target, "f": filename, "s": sub, "e": expires, "n": secrets.token_hex(12)}
        if key_id:
            claims["k"] = key_id
        payload = json.dumps(claims)
        body = _b64(payload.encode())
        return f"{body}.{_b64(self._sign(body))}", expires

    def redeem(self, ticket: str, target: str, filename: str) -> str:
        """Use a ticket for `filename` of `target`; whom it was issued to, else AuthError."""
        return self.redeem_as(ticket, target, filename)[0]

    def redeem_as(self, ticket: str, target: str, filename: str) -> tuple[str, str]:
        """As `redeem`: whom it was issued to, and the API key that asked ("" for a token)."""
        body, _, signature = ticket.partition(".")
        try:
            good = hmac.compare_digest(_unb64(signature), self._sign(body))
            claims = json.loads(_unb64(body)) if good else None
        except ValueError:
            claims = None
        if not isinstance(claims, dict):
            raise AuthError("invalid download ticket", "ask for a new download link")
        now = self._clock()
        if (claims.get("t"), claims.get("f")) != (target, filename):
            raise AuthError("invalid download ticket", "the ticket is for another backup")
        if float(claims.get("e", 0)) < now:
            raise AuthError("expired download ticket", "ask for a new download link")
        with self._lock:
            self._used = {n: e for n, e in self._used.items() if e >= now}
            if claims["n"] in self._used:
                raise AuthError("used download ticket", "a ticket works once; ask for a new link")
            self._used[claims["n"]] = float(claims["e"])
        if self._redeem_once is not None:
            expires = datetime.fromtimestamp(float(claims["e"]), UTC)
            if not self._redeem_once(str(claims["n"]), expires):
                raise AuthError("used download ticket", "a ticket works once; ask for a new link")
        return str(claims.get("s", "")), str(claims.get("k", ""))

    def _sign(self, body: str) -> bytes:
        return hmac.new(self._key, body.encode(), hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
