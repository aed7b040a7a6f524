"""Tokens, unit by unit (no server): what TokenVerifier accepts, and what `pgkeep token` mints."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from pgkeep.config import load_settings
from pgkeep.errors import AuthError, Forbidden, InvalidInput
from pgkeep.tokens import MAX_TTL_SECONDS, Principal, TokenVerifier, mint, parse_ttl
from tests.conftest import SECRET, SIGNING_KEY

NOW = datetime.now(UTC)  # the suite runs in minutes: offsets below are hours


def _token(**claims: Any) -> str:
    now = datetime.now(UTC)
    body: dict[str, Any] = {"sub": "alice", "role": "OWNER", "exp": now + timedelta(hours=6)}
    body.update(claims)
    return jwt.encode({k: v for k, v in body.items() if v is not None}, SECRET, "HS256")


def _verifier(**overrides: Any) -> TokenVerifier:
    return TokenVerifier(load_settings(**{"jwt_secret": SECRET, **overrides}))


def test_a_good_token_speaks_for_its_subject() -> None:
    assert _verifier().verify(_token()) == Principal("alice", "OWNER")
    assert _verifier().verify(_token(sub=None)) == Principal("", "OWNER")


@pytest.mark.parametrize("role", ["owner", "OWNER ", "ADMIN", None, ["OWNER"], 1])
def test_the_role_must_equal_exactly(role: object) -> None:
    with pytest.raises(Forbidden) as caught:
        _verifier().verify(_token(role=role))
    assert caught.value.message == "access denied"
    assert "'role' claim must be 'OWNER'" in caught.value.details


def test_role_claim_and_required_role_come_from_settings() -> None:
    verifier = _verifier(jwt_role_claim="groups_role", required_role="backup-admin")
    assert verifier.verify(_token(role=None, groups_role="backup-admin")).role == "backup-admin"
    with pytest.raises(Forbidden):
        verifier.verify(_token())  # role=OWNER in the default claim is not enough


@pytest.mark.parametrize(
    "claims",
    [
        {"exp": None},  # exp is required
        {"exp": NOW - timedelta(minutes=1)},  # expired beyond the 30 s leeway
        {"nbf": NOW + timedelta(hours=3)},
        {"iat": NOW + timedelta(hours=3)},
        {"exp": "9999999999"},
        {"exp": True},
        {"nbf": "0"},
        {"iat": None, "nbf": [0]},
        {"iat": "100"},  # PyJWT takes a numeric string for iat
    ],
)
def test_time_claims_are_strict(claims: dict[str, Any]) -> None:
    with pytest.raises(AuthError) as caught:
        _verifier().verify(_token(**claims))
    assert caught.value.message == "invalid token"
    assert caught.value.details


@pytest.mark.parametrize("name", ["exp", "nbf", "iat"])
def test_each_time_claim_must_be_a_json_number(name: str) -> None:
    with pytest.raises(AuthError) as caught:
        _verifier().verify(_token(**{name: "100" if name != "exp" else "9999999999"}))
    assert caught.value.message == "invalid token"
    assert caught.value.details == f"the {name!r} claim must be a number"


def test_max_lifetime_allows_exactly_the_limit_plus_leeway() -> None:
    verifier = _verifier(jwt_max_lifetime="1h", jwt_leeway_seconds=30)
    issued = int(time.time()) - 1
    assert verifier.verify(_token(iat=issued, exp=issued + 3600 + 30))
    with pytest.raises(AuthError) as caught:
        verifier.verify(_token(iat=issued, exp=issued + 3600 + 31))
    assert caught.value.message == "invalid token"
    assert caught.value.details == "it lives longer than PGKEEP_JWT_MAX_LIFETIME (1:00:00)"


def test_a_public_key_verifies_tokens_signed_with_its_private_key() -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    verifier = TokenVerifier(
        load_settings(jwt_public_key=pem.decode(), jwt_algorithms="ES256", signing_key=SIGNING_KEY)
    )
    claims = {"role": "OWNER", "exp": datetime.now(UTC) + timedelta(hours=1)}
    assert verifier.verify(jwt.encode(claims, private, "ES256")).role == "OWNER"
    other = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(AuthError) as caught:
        verifier.verify(jwt.encode(claims, other, "ES256"))
    assert (caught.value.message, caught.value.details) == (
        "invalid token",
        "Signature verification failed",
    )


def test_leeway_is_honoured_both_ways() -> None:
    assert _verifier().verify(_token(exp=datetime.now(UTC) - timedelta(seconds=20)))
    assert _verifier().verify(_token(nbf=datetime.now(UTC) + timedelta(seconds=20)))
    with pytest.raises(AuthError):
        _verifier(jwt_leeway_seconds=0).verify(
            _token(exp=datetime.now(UTC) - timedelta(seconds=20))
        )


def test_max_lifetime_counts_from_issue_or_now() -> None:
    verifier = _verifier(jwt_max_lifetime="1h", jwt_leeway_seconds=0)
    assert verifier.verify(_token(exp=datetime.now(UTC) + timedelta(minutes=59)))
    assert verifier.verify(
        _token(iat=datetime.now(UTC), exp=datetime.now(UTC) + timedelta(minutes=59))
    )
    for claims in (
        {"exp": datetime.now(UTC) + timedelta(minutes=61)},
        {
            "iat": datetime.now(UTC) - timedelta(hours=2),
            "exp": datetime.now(UTC) + timedelta(minutes=1),
        },
    ):
        with pytest.raises(AuthError, match="invalid token") as caught:
            verifier.verify(_token(**claims))
        assert "PGKEEP_JWT_MAX_LIFETIME" in caught.value.details
    assert _verifier().verify(_token(exp=datetime(9999, 1, 1, tzinfo=UTC)))  # off by default


def test_algorithms_are_pinned_by_settings() -> None:
    with pytest.raises(AuthError) as caught:
        _verifier().verify(
            jwt.encode({"exp": datetime.now(UTC) + timedelta(hours=1)}, SECRET * 2, "HS512")
        )
    assert caught.value.message == "invalid token"
    assert caught.value.details == "algorithm 'HS512' is not accepted"
    header = base64.urlsafe_b64encode(json.dumps({"alg": "HS256" * 5}).encode()).decode()
    long_name = f"{header.rstrip('=')}.e30.c2ln"
    with pytest.raises(AuthError) as caught:
        _verifier().verify(long_name)
    assert caught.value.details == "algorithm 'HS256HS256HS256H' is not accepted"
    verifier = _verifier(jwt_algorithms="HS256,HS512", jwt_secret=SECRET * 2)
    token = jwt.encode(
        {"role": "OWNER", "exp": datetime.now(UTC) + timedelta(hours=1)}, SECRET * 2, "HS512"
    )
    assert verifier.verify(token).role == "OWNER"


@pytest.mark.parametrize("token", ["", "x", "a.b.c", "e30.e30.", _token() + "x"])
def test_malformed_or_forged_tokens(token: str) -> None:
    with pytest.raises(AuthError, match="invalid token"):
        _verifier().verify(token)


def test_audience_and_issuer() -> None:
    verifier = _verifier(jwt_audience="pgkeep", jwt_issuer="https://id.example")
    assert verifier.verify(_token(aud="pgkeep", iss="https://id.example"))
    for claims in ({"aud": "x", "iss": "https://id.example"}, {"aud": "pgkeep", "iss": "x"}, {}):
        with pytest.raises(AuthError):
            verifier.verify(_token(**claims))
    assert _verifier().verify(_token(aud="anything"))  # no audience configured: not checked


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("1s", 1), ("90s", 90), ("30m", 1800), ("1h", 3600), ("7d", 604800), (" 2h ", 7200)],
)
def test_parse_ttl(text: str, seconds: int) -> None:
    assert parse_ttl(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize(
    "text",
    ["0s", "367d", "1", "h", "1w", "-1h", "1.5h", "\u0661h", ""],  # Arabic-Indic one
)
def test_parse_ttl_refuses(text: str) -> None:
    with pytest.raises(InvalidInput):
        parse_ttl(text)


def test_parse_ttl_upper_bound_is_inclusive() -> None:
    assert parse_ttl(f"{MAX_TTL_SECONDS}s").total_seconds() == MAX_TTL_SECONDS
    with pytest.raises(InvalidInput) as caught:
        parse_ttl(f"{MAX_TTL_SECONDS + 1}s")
    assert caught.value.details == "between 1 second and 366 days"


def test_mint_makes_a_token_the_verifier_accepts() -> None:
    settings = load_settings(
        jwt_secret=SECRET, jwt_audience="pgkeep", jwt_issuer="https://id.example"
    )
    token = mint(settings, sub="ops", role="OWNER", ttl=timedelta(minutes=5))
    claims = jwt.decode(
        token, SECRET, algorithms=["HS256"], audience="pgkeep", issuer="https://id.example"
    )
    assert (claims["sub"], claims["role"]) == ("ops", "OWNER")
    assert claims["exp"] - claims["iat"] == 300
    assert claims["nbf"] == claims["iat"]
    assert len(claims["jti"]) == 32
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    assert TokenVerifier(settings).verify(token).sub == "ops"
    assert mint(settings, sub="ops", role="OWNER", ttl=timedelta(minutes=5)) != token


def test_mint_without_aud_or_iss_adds_none() -> None:
    claims = jwt.decode(
        mint(load_settings(jwt_secret=SECRET), sub="x", role="R", ttl=timedelta(seconds=60)),
        SECRET,
        algorithms=["HS256"],
    )
    assert "aud" not in claims
    assert "iss" not in claims
    assert claims["role"] == "R"


class _Jwks:
    def __init__(self, delay: float = 0.0) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(self.key.public_key()))
        document = {"keys": [{**jwk, "kid": "k1", "use": "sig", "alg": "ES256"}]}
        self.hits = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.hits += 1
                time.sleep(delay)
                body = json.dumps(document).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/jwks.json"

    def token(self) -> str:
        claims = {"role": "OWNER", "exp": datetime.now(UTC) + timedelta(hours=1)}
        return jwt.encode(claims, self.key, "ES256", headers={"kid": "k1"})

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def jwks() -> Iterator[_Jwks]:
    server = _Jwks()
    yield server
    server.close()


def test_jwks_keys_are_cached(jwks: _Jwks) -> None:
    verifier = TokenVerifier(
        load_settings(jwt_jwks_url=jwks.url, jwt_algorithms="ES256", signing_key=SIGNING_KEY)
    )
    for _ in range(3):
        assert verifier.verify(jwks.token()).role == "OWNER"
    assert jwks.hits == 1


def test_a_hanging_jwks_endpoint_fails_within_its_timeout() -> None:
    slow = _Jwks(delay=8)
    try:
        verifier = TokenVerifier(
            load_settings(jwt_jwks_url=slow.url, jwt_algorithms="ES256", signing_key=SIGNING_KEY)
        )
        started = time.monotonic()
        with pytest.raises(AuthError) as caught:
            verifier.verify(slow.token())
        assert caught.value.message == "invalid token"
        assert 4.5 < time.monotonic() - started < 6.5
        assert "signing key unavailable" in caught.value.details
    finally:
        slow.close()


def test_parse_ttl_refusals_say_what_is_allowed() -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_ttl("forever")
    assert (caught.value.message, caught.value.details) == (
        "invalid ttl 'forever'",
        "use a number and a unit: 90s, 30m, 1h, 7d",
    )
    with pytest.raises(InvalidInput) as bounds:
        parse_ttl("0s")
    assert bounds.value.message == "invalid ttl '0s'"


def test_mint_uses_the_first_configured_algorithm() -> None:
    settings = load_settings(jwt_secret=SECRET * 2, jwt_algorithms="HS512,HS256")
    token = mint(settings, sub="x", role="OWNER", ttl=timedelta(minutes=1))
    assert jwt.get_unverified_header(token)["alg"] == "HS512"


def test_mint_times_are_utc_whatever_the_local_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Asia/Kolkata")
    time.tzset()
    try:
        token = mint(load_settings(jwt_secret=SECRET), sub="x", role="R", ttl=timedelta(minutes=5))
        claims = jwt.decode(token, SECRET, algorithms=["HS256"])
        assert abs(claims["iat"] - time.time()) < 60
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
