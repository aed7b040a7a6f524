"""JWT bearer tokens: verified with pinned algorithms and keys, minted for the CLI.

`alg: none` and key/algorithm confusion are refused because the accepted
algorithms come from settings (HMAC only with a secret, public-key algorithms
only with a public key or JWKS), never from the token's header.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt

from pgkeep.config import Settings
from pgkeep.errors import AuthError, Forbidden, InvalidInput

_TTL = re.compile(r"([0-9]+)([smhd])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_TTL_SECONDS = 366 * 86400


@dataclass(frozen=True)
class Principal:
    """Who a valid token speaks for."""

    sub: str
    role: str


class TokenVerifier:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._algorithms = list(settings.algorithms)
        self._jwks: jwt.PyJWKClient | None = None
        self._key: Any = None
        if settings.jwt_secret is not None:
            self._key = settings.jwt_secret.get_secret_value()
        elif settings.jwt_jwks_url is not None:
            self._jwks = jwt.PyJWKClient(settings.jwt_jwks_url, cache_keys=True, timeout=5)
        else:
            self._key = settings.public_key_pem()

    def verify(self, token: str) -> Principal:
        """The token's principal; AuthError if it is not valid, Forbidden if its role is wrong."""
        claims = self._decode(token)
        role = claims.get(self._settings.jwt_role_claim)
        if role != self._settings.required_role:
            raise Forbidden(
                "access denied",
                f"the token's {self._settings.jwt_role_claim!r} claim must be "
                f"{self._settings.required_role!r}",
            )
        return Principal(sub=str(claims.get("sub", "")), role=role)

    def _check_times(self, claims: dict[str, Any]) -> None:
        """`exp`, `nbf` and `iat` must be JSON numbers (PyJWT also takes numeric strings), and
        with PGKEEP_JWT_MAX_LIFETIME a token may not live longer than that."""
        for name in ("exp", "nbf", "iat"):
            value = claims.get(name)
            if name in claims and (isinstance(value, bool) or not isinstance(value, int | float)):
                raise AuthError("invalid token", f"the {name!r} claim must be a number")
        limit = self._settings.jwt_max_lifetime
        if limit is None:
            return
        now = datetime.now(UTC).timestamp()
        issued = claims.get("iat", now)
        longest = limit.total_seconds() + self._settings.jwt_leeway_seconds
        if claims["exp"] - min(issued, now) > longest:
            raise AuthError(
                "invalid token", f"it lives longer than PGKEEP_JWT_MAX_LIFETIME ({limit})"
            )

    def _decode(self, token: str) -> dict[str, Any]:
        s = self._settings
        try:
            algorithm = jwt.get_unverified_header(token).get("alg")
            if algorithm not in self._algorithms:
                raise AuthError(
                    "invalid token", f"algorithm {str(algorithm)[:16]!r} is not accepted"
                )
            key = self._key
            if self._jwks is not None:
                key = self._jwks.get_signing_key_from_jwt(token).key
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=self._algorithms,
                audience=s.jwt_audience,
                issuer=s.jwt_issuer,
                leeway=s.jwt_leeway_seconds,
                options={"require": ["exp"], "verify_aud": s.jwt_audience is not None},
            )
        except jwt.PyJWKClientError as exc:
            raise AuthError("invalid token", f"signing key unavailable: {exc}") from None
        except jwt.PyJWTError as exc:
            raise AuthError("invalid token", str(exc)) from None
        self._check_times(claims)
        return claims


def parse_ttl(text: str) -> timedelta:
    """`90s`, `30m`, `1h`, `7d` → timedelta."""
    match = _TTL.fullmatch(text.strip())
    if match is None:
        raise InvalidInput(f"invalid ttl {text!r}", "use a number and a unit: 90s, 30m, 1h, 7d")
    seconds = int(match[1]) * _UNITS[match[2]]
    if not 0 < seconds <= MAX_TTL_SECONDS:
        raise InvalidInput(f"invalid ttl {text!r}", "between 1 second and 366 days")
    return timedelta(seconds=seconds)


def mint(settings: Settings, *, sub: str, role: str, ttl: timedelta) -> str:
    """An HS256 token signed with PGKEEP_JWT_SECRET, carrying the configured role claim."""
    now = datetime.now(UTC)
    claims: dict[str, Any] = {
        "sub": sub,
        settings.jwt_role_claim: role,
        "iat": now,
        "nbf": now,
        "exp": now + ttl,
        "jti": uuid.uuid4().hex,
    }
    if settings.jwt_audience:
        claims["aud"] = settings.jwt_audience
    if settings.jwt_issuer:
        claims["iss"] = settings.jwt_issuer
    algorithm = settings.algorithms[0]
    return jwt.encode(claims, settings.require_signing_secret(), algorithm=algorithm)
