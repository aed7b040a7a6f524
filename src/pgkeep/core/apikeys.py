"""API keys for machines: scoped, limited to some targets, expiring, revocable. Pure: the
records live behind `KeyStore` (the control database, or pgkeep's state file).

A key is `pgk_<id>_<secret>`: a public 16-hex-digit id (how a record is found) and 32
random bytes. Only the SHA-256 of the whole key is stored (the secret has 256 bits of
entropy: no slow hash is needed), and each record carries an HMAC under a key derived
from the signing key, so a row written by anyone without it is not a key. Failed
attempts are counted per client address and per key id (`Attempts`) and checked before
any hashing; the compare is constant-time whether the id exists or not.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import datetime, timedelta

from pgkeep.core.credentials import (
    SCOPES,
    ApiKey,
    Attempts,
    Credential,
    KeyStore,
    credential_of,
)
from pgkeep.core.events import Actor, Events
from pgkeep.core.signing import Signer, Verdict
from pgkeep.errors import AuthError, Busy, Forbidden, InvalidInput, NotFound

PREFIX = "pgk_"
DEFAULT_EXPIRES_IN = "90d"
NEVER = "never"
MAX_LIFETIME = timedelta(days=366)
WINDOW = timedelta(minutes=1)
MAX_FAILURES_PER_ADDRESS = 10
MAX_FAILURES_PER_KEY = 10
MAX_CHAIN = 32  # keys minted by keys: how deep a chain is followed
TOUCH_EVERY = timedelta(minutes=1)  # lastUsedAt is written at most this often per key
_ID = re.compile(r"[0-9a-f]{16}")
_TTL = re.compile(r"([0-9]{1,9})([smhd])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def parse_expires_in(text: str | None) -> timedelta | None:
    """`90s`, `30m`, `12h`, `90d` (1 s to 366 d), or "never" (None); omitted: 90 days."""
    text = DEFAULT_EXPIRES_IN if text is None else text.strip()
    if text == NEVER:
        return None
    match = _TTL.fullmatch(text)
    seconds = int(match[1]) * _UNITS[match[2]] if match else 0
    if not 0 < seconds <= MAX_LIFETIME.total_seconds():
        raise InvalidInput(
            f"invalid expiresIn {text[:20]!r}", "a number and s, m, h or d: 1s to 366d, or never"
        )
    return timedelta(seconds=seconds)


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def split(key: str) -> tuple[str, str] | None:
    """The id and the secret of something shaped as a key; None otherwise."""
    if not key.startswith(PREFIX):
        return None
    key_id, _, secret = key[len(PREFIX) :].partition("_")
    return (key_id, secret) if _ID.fullmatch(key_id) and len(secret) >= 43 else None


_DUMMY = digest(PREFIX + "0" * 16 + "_" + "x" * 43)


class ApiKeys:
    """Minting, checking and revoking keys; the clock is injected (tests move it)."""

    def __init__(
        self,
        store: KeyStore,
        attempts: Attempts,
        signer: Signer,
        events: Events,
        clock: Callable[[], datetime],
    ) -> None:
        self._store = store
        self._attempts = attempts
        self._signer = signer.derive("api-keys")
        self._events = events
        self._clock = clock

    def mint(
        self,
        creator: Credential,
        actor: Actor,
        name: str,
        scopes: Iterable[str],
        targets: Iterable[str] | None,
        expires_in: str | None,
    ) -> tuple[ApiKey, str]:
        """A new key (its record, and the key itself: shown once, stored nowhere)."""
        with self._events.action("key-create", "", actor) as done:
            creator.require("keys:manage")
            record, key = self._mint(creator, name, scopes, targets, expires_in)
            done.filename = f"{record.name} {record.id}"
        return record, key

    def _mint(
        self,
        creator: Credential,
        name: str,
        scopes: Iterable[str],
        targets: Iterable[str] | None,
        expires_in: str | None,
    ) -> tuple[ApiKey, str]:
        if not _NAME.fullmatch(name):
            raise InvalidInput(f"invalid key name {name[:64]!r}", "letters, digits, . _ -")
        wanted = tuple(dict.fromkeys(scopes))
        unknown = [s for s in wanted if s not in SCOPES]
        if unknown or not wanted:
            raise InvalidInput("invalid scopes", f"choose from: {', '.join(SCOPES)}")
        limited = None if targets is None else tuple(dict.fromkeys(targets))
        if limited is None and creator.targets is not None:
            limited = tuple(sorted(creator.targets))
        now = self._clock()
        lifetime = parse_expires_in(expires_in)
        expires = None if lifetime is None else now + lifetime
        _check_subset(creator, wanted, limited, expires)
        key_id = secrets.token_hex(8)
        key = f"{PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
        owner = creator.sub
        record = ApiKey(key_id, name, digest(key), wanted, limited, owner, now, expires)
        record = replace(record, parent=creator.key_id or None)
        signature = self._signer.sign(record.signed_fields())
        record = replace(record, mac=f"{signature['keyId']}:{signature['hmac']}")
        self._store.add(record)
        return record, key

    def authenticate(self, key: str, address: str) -> Credential:
        """The credential of a valid key; else AuthError (unknown, forged, revoked, expired),
        or Busy for a client past its failures. An unknown id from an address past its
        failures is refused before any hashing; a known key's secret is always compared
        (one SHA-256) and a correct one accepted whatever the counts: key ids are not
        secret, so counting failures against an id would let anyone lock its key out."""
        parts = split(key)
        key_id = parts[0] if parts else "-"
        now = self._clock()
        by_address, by_key, mine = self._attempts.counts(address, key_id, now - WINDOW)
        busy = Busy("too many failed API key attempts", "try again later", int(WINDOW.seconds))
        record = self._store.get(key_id) if parts else None
        if record is not None and not self._genuine(record):
            record = None
        if record is None and by_address >= MAX_FAILURES_PER_ADDRESS:
            raise busy
        good = hmac.compare_digest(digest(key), record.digest if record else _DUMMY)
        if record is None or not good:
            self._attempts.fail(address, key_id, now)
            over = by_address >= MAX_FAILURES_PER_ADDRESS or (
                mine and by_key >= MAX_FAILURES_PER_KEY
            )
            if over:
                raise busy
            raise AuthError("invalid API key", "unknown key")
        self._check_standing(record, now)
        if record.last_used_at is None or now - record.last_used_at >= TOUCH_EVERY:
            self._store.touch(key_id, now)
        return credential_of(record)

    def standing(self, key_id: str) -> Credential:
        """The credential of the key `key_id` if it still stands (a download ticket it asked
        for is used later); AuthError if it was revoked, expired or is gone since."""
        record = self._store.get(key_id) if _ID.fullmatch(key_id) else None
        if record is None or not self._genuine(record):
            raise AuthError("invalid download ticket", "the API key that asked for it is gone")
        self._check_standing(record, self._clock())
        return credential_of(record)

    def _check_standing(self, record: ApiKey, now: datetime) -> None:
        """AuthError if the key, or a key that minted it (up its chain), was revoked or
        expired, or that key's record is gone or not genuine: a key cannot outlive the
        key it was minted with."""
        seen: set[str] = set()
        current: ApiKey | None = record
        while current is not None:
            if current.revoked_at is not None:
                whose = "the key" if current is record else "the key that minted it"
                raise AuthError("invalid API key", f"{whose} was revoked")
            if current.expires_at is not None and now >= current.expires_at:
                raise AuthError("invalid API key", "the key expired")
            if current.parent is None:
                return
            if current.parent in seen or len(seen) >= MAX_CHAIN:
                break
            seen.add(current.parent)
            current = self._store.get(current.parent)
            if current is not None and not self._genuine(current):
                current = None
        raise AuthError("invalid API key", "the key that minted it is gone")

    def list(self) -> list[ApiKey]:
        return [k for k in self._store.list() if self._genuine(k)]

    def revoke(self, creator: Credential, actor: Actor, key_id: str) -> None:
        with self._events.action("key-revoke", "", actor, key_id[:32]):
            self._revoke(creator, key_id)

    def _revoke(self, creator: Credential, key_id: str) -> None:
        creator.require("keys:manage")
        record = self._store.get(key_id) if _ID.fullmatch(key_id) else None
        if record is None or not self._genuine(record):
            raise NotFound(f"API key {key_id[:32]!r} not found")
        if creator.targets is not None and not (
            record.targets and _subset(record.targets, creator.targets)
        ):
            raise Forbidden("access denied", "this API key cannot revoke keys for other targets")
        if creator.kind == "key":  # as minting: only keys that can do no more than it
            if not set(record.scopes) <= creator.scopes:
                raise Forbidden(
                    "access denied", "a key revokes only keys with a subset of its scopes"
                )
            if record.id != creator.key_id and record.id in self._ancestors(creator.key_id):
                raise Forbidden("access denied", "a key cannot revoke the key that minted it")
        self._store.revoke(key_id, self._clock())

    def _ancestors(self, key_id: str) -> set[str]:
        """The keys up the chain that minted `key_id`."""
        found: set[str] = set()
        record = self._store.get(key_id)
        while record is not None and record.parent and record.parent not in found:
            found.add(record.parent)
            if len(found) > MAX_CHAIN:
                break
            record = self._store.get(record.parent)
        return found

    def _genuine(self, record: ApiKey) -> bool:
        signer_id, _, mac = record.mac.partition(":")
        signature = {"keyId": signer_id, "hmac": mac}
        return self._signer.check(record.signed_fields(), signature) is Verdict.GOOD


def _subset(inner: tuple[str, ...] | None, outer: frozenset[str]) -> bool:
    return inner is not None and set(inner) <= outer


def _check_subset(
    creator: Credential,
    scopes: tuple[str, ...],
    targets: tuple[str, ...] | None,
    expires: datetime | None,
) -> None:
    """A key mints only keys that can do no more than it, for no longer."""
    if creator.kind != "key":
        return
    if not set(scopes) <= creator.scopes:
        raise Forbidden("access denied", "a key mints only keys with a subset of its scopes")
    if creator.targets is not None and not _subset(targets, creator.targets):
        raise Forbidden("access denied", "a key mints only keys for a subset of its targets")
    if creator.expires_at is not None and (expires is None or expires > creator.expires_at):
        raise Forbidden("access denied", "a key mints only keys expiring no later than itself")
