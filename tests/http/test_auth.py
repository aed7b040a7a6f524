"""Tokens: forged, expired, confused and wrong-role tokens are refused; good ones pass."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import warnings
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from pgkeep.config import Settings
from pgkeep.http.app import create_app
from tests.conftest import SECRET, SIGNING_KEY

pytestmark = pytest.mark.anyio


def _claims(**changes: Any) -> dict[str, Any]:
    exp = datetime.now(UTC) + timedelta(hours=1)
    claims: dict[str, Any] = {"sub": "alice", "role": "OWNER", "exp": exp}
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unsigned(claims: dict[str, Any]) -> str:
    header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    body = _b64(json.dumps(claims, default=lambda d: int(d.timestamp())).encode())
    return f"{header}.{body}."


async def _status(settings: Settings, headers: dict[str, str]) -> httpx.Response:
    transport = httpx.ASGITransport(app=create_app(settings))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        return await client.get("/api/backup/list", headers=headers)


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _hs512(claims: dict[str, Any]) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PyJWT warns the key is short for HS512; so it is
        return jwt.encode(claims, SECRET, "HS512")


def _hs_cases() -> dict[str, tuple[dict[str, str], int]]:
    """Minted when the test runs, so expiry is relative to then."""
    now = datetime.now(UTC)
    return {
        "valid": (_bearer(jwt.encode(_claims(), SECRET, "HS256")), 200),
        "no header": ({}, 401),
        "basic scheme": ({"Authorization": "Basic YWxpY2U6cHc="}, 401),
        "empty bearer": ({"Authorization": "Bearer "}, 401),
        "garbage": (_bearer("not.a.jwt"), 401),
        "alg none": (_bearer(_unsigned(_claims())), 401),
        "wrong key": (_bearer(jwt.encode(_claims(), SECRET + "x", "HS256")), 401),
        "HS512 not pinned": (_bearer(_hs512(_claims())), 401),
        "expired": (
            _bearer(jwt.encode(_claims(exp=now - timedelta(minutes=5)), SECRET, "HS256")),
            401,
        ),
        "expired within leeway": (
            _bearer(jwt.encode(_claims(exp=now - timedelta(seconds=5)), SECRET, "HS256")),
            200,
        ),
        "no exp": (_bearer(jwt.encode(_claims(exp=None), SECRET, "HS256")), 401),
        "nbf in future": (
            _bearer(jwt.encode(_claims(nbf=now + timedelta(minutes=5)), SECRET, "HS256")),
            401,
        ),
        "iat in future": (
            _bearer(jwt.encode(_claims(iat=now + timedelta(minutes=5)), SECRET, "HS256")),
            401,
        ),
        "wrong role": (_bearer(jwt.encode(_claims(role="ADMIN"), SECRET, "HS256")), 403),
        "lowercase role": (_bearer(jwt.encode(_claims(role="owner"), SECRET, "HS256")), 403),
        "role in a list": (_bearer(jwt.encode(_claims(role=["OWNER"]), SECRET, "HS256")), 403),
        "no role": (_bearer(jwt.encode(_claims(role=None), SECRET, "HS256")), 403),
    }


@pytest.mark.parametrize("case", list(_hs_cases()))
async def test_hs256_tokens(settings: Settings, case: str) -> None:
    headers, expected = _hs_cases()[case]
    response = await _status(settings, headers)
    assert response.status_code == expected, response.text
    if expected != 200:
        assert set(response.json()) == {"error", "details"}
    if expected == 401:
        assert response.headers["www-authenticate"] == "Bearer"
    if expected == 403:
        assert response.json()["error"] == "access denied"


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _public_pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


async def test_rs256_public_key_and_key_confusion(
    make_settings: Callable[..., Settings], rsa_key: rsa.RSAPrivateKey
) -> None:
    pem = _public_pem(rsa_key)
    settings = make_settings(jwt_secret=None, jwt_public_key=pem, signing_key=SIGNING_KEY)
    good = jwt.encode(_claims(), rsa_key, "RS256")
    assert (await _status(settings, _bearer(good))).status_code == 200
    # The classic confusion: HS256 signed with the public key's PEM as the HMAC secret.
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = _b64(json.dumps(_claims(), default=lambda d: int(d.timestamp())).encode())
    signature = hmac.new(pem.encode(), f"{header}.{body}".encode(), hashlib.sha256).digest()
    confused = f"{header}.{body}.{_b64(signature)}"
    assert (await _status(settings, _bearer(confused))).status_code == 401
    assert (await _status(settings, _bearer(_unsigned(_claims())))).status_code == 401


async def test_audience_and_issuer_are_checked(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(jwt_audience="pgkeep", jwt_issuer="https://id.example")
    ok = jwt.encode(_claims(aud="pgkeep", iss="https://id.example"), SECRET, "HS256")
    wrong_aud = jwt.encode(_claims(aud="other", iss="https://id.example"), SECRET, "HS256")
    wrong_iss = jwt.encode(_claims(aud="pgkeep", iss="https://evil.example"), SECRET, "HS256")
    assert (await _status(settings, _bearer(ok))).status_code == 200
    assert (await _status(settings, _bearer(wrong_aud))).status_code == 401
    assert (await _status(settings, _bearer(wrong_iss))).status_code == 401


@pytest.fixture
def jwks_server() -> Iterator[tuple[str, ec.EllipticCurvePrivateKey]]:
    key = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    document = json.dumps({"keys": [{**jwk, "kid": "k1", "use": "sig", "alg": "ES256"}]}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(document)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/jwks.json", key
    server.shutdown()
    server.server_close()


async def test_es256_through_a_real_jwks_endpoint(
    make_settings: Callable[..., Settings],
    jwks_server: tuple[str, ec.EllipticCurvePrivateKey],
) -> None:
    url, key = jwks_server
    settings = make_settings(
        jwt_secret=None, jwt_jwks_url=url, jwt_algorithms="ES256", signing_key=SIGNING_KEY
    )
    good = jwt.encode(_claims(), key, "ES256", headers={"kid": "k1"})
    stranger = jwt.encode(
        _claims(), ec.generate_private_key(ec.SECP256R1()), "ES256", headers={"kid": "k1"}
    )
    unknown_kid = jwt.encode(_claims(), key, "ES256", headers={"kid": "nope"})
    assert (await _status(settings, _bearer(good))).status_code == 200
    assert (await _status(settings, _bearer(stranger))).status_code == 401
    assert (await _status(settings, _bearer(unknown_kid))).status_code == 401


@pytest.mark.parametrize(
    ("claims", "accepted"),
    [
        ({}, True),
        ({"exp": str(int((datetime.now(UTC) + timedelta(hours=1)).timestamp()))}, False),
        ({"exp": True}, False),
        ({"exp": None}, False),
        ({"nbf": "0"}, False),
        ({"iat": [1]}, False),
        ({"exp": datetime(9999, 1, 1, tzinfo=UTC)}, True),  # no lifetime limit by default
    ],
)
async def test_time_claims_must_be_numbers(
    settings: Settings, claims: dict[str, Any], accepted: bool
) -> None:
    token = jwt.encode(_claims(**claims), SECRET, "HS256")
    response = await _status(settings, _bearer(token))
    assert (response.status_code == 200) is accepted, response.text


async def test_max_lifetime_refuses_long_lived_tokens(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(jwt_max_lifetime="1d")
    now = datetime.now(UTC)
    cases = [
        (_claims(exp=now + timedelta(hours=20)), 200),
        (_claims(exp=now + timedelta(days=2)), 401),
        (_claims(exp=datetime(9999, 1, 1, tzinfo=UTC)), 401),
        (_claims(iat=now - timedelta(days=3), exp=now + timedelta(hours=1)), 401),
        (_claims(iat=now, exp=now + timedelta(hours=23)), 200),
    ]
    for claims, status in cases:
        response = await _status(settings, _bearer(jwt.encode(claims, SECRET, "HS256")))
        assert response.status_code == status, (claims, response.text)
        if status == 401:
            assert "PGKEEP_JWT_MAX_LIFETIME" in response.json()["details"]


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
async def test_bearer_scheme_any_case_and_no_other(settings: Settings, scheme: str) -> None:
    token = jwt.encode(_claims(), SECRET, "HS256")
    assert (await _status(settings, {"Authorization": f"{scheme} {token}"})).status_code == 200
    for other in ("Basic", "Token", "JWT", "Bearer:"):
        response = await _status(settings, {"Authorization": f"{other} {token}"})
        assert response.status_code == 401, other
