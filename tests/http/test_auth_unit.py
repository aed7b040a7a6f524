"""The auth dependencies on a bare app (no database): schemes, query tokens, tickets, actors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest
from fastapi import FastAPI, Request

from pgkeep.config import load_settings
from pgkeep.core.credentials import Credential
from pgkeep.http import errors
from pgkeep.http.access_log import AccessLogMiddleware
from pgkeep.http.auth import DownloadAccess, Owner, actor_of
from pgkeep.tickets import TicketIssuer
from pgkeep.tokens import TokenVerifier
from tests.conftest import SECRET

pytestmark = pytest.mark.anyio
NAME = "backup-2024-12-09T10-30-45.sql"


def _token(sub: str = "alice", role: str = "OWNER") -> str:
    claims = {"sub": sub, "role": role, "exp": datetime.now(UTC) + timedelta(hours=1)}
    return jwt.encode(claims, SECRET, "HS256")


@pytest.fixture
async def bare() -> AsyncIterator[tuple[httpx.AsyncClient, FastAPI]]:
    app = FastAPI()
    errors.install(app)
    app.state.verifier = TokenVerifier(load_settings(jwt_secret=SECRET))
    app.state.tickets = TicketIssuer()
    known = {None: "shop", "shop": "shop", "crm": "crm"}  # no ?target=: the default one
    app.state.target_of = known.get

    @app.get("/owner")
    def owner(request: Request, actor: Owner) -> dict[str, Any]:
        return {**actor.__dict__, "principal": request.state.credential.sub}

    @app.get("/download/{filename:path}")
    def download(filename: str, actor: DownloadAccess) -> dict[str, Any]:
        return dict(actor.__dict__)

    app.add_middleware(AccessLogMiddleware)
    transport = httpx.ASGITransport(app=app, client=("10.1.2.3", 5555))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        yield client, app


async def test_owner_actor_carries_who_where_and_the_request_id(
    bare: tuple[httpx.AsyncClient, FastAPI],
) -> None:
    client, _ = bare
    response = await client.get(
        "/owner", headers={"Authorization": f"Bearer {_token()}", "X-Request-Id": "req-1"}
    )
    assert response.json() == {
        "who": "alice",
        "via": "api",
        "source": "10.1.2.3",
        "request_id": "req-1",
        "key_id": "",
        "owner": "",
        "principal": "alice",
    }


@pytest.mark.parametrize(
    ("header", "error"),
    [
        (None, "no authorization token"),
        ("", "invalid authorization header"),
        ("Bearer", "invalid authorization header"),
        ("Bearer    ", "invalid authorization header"),
        ("Basic {t}", "invalid authorization header"),
        ("Token {t}", "invalid authorization header"),
        ("{t}", "invalid authorization header"),
        ("Bearer {t}x", "invalid token"),
        ("Bearer {w}", "access denied"),
    ],
)
async def test_owner_refusals_say_why(
    bare: tuple[httpx.AsyncClient, FastAPI], header: str | None, error: str
) -> None:
    client, _ = bare
    headers = {}
    if header is not None:
        headers["Authorization"] = header.format(t=_token(), w=_token(role="VIEWER"))
    response = await client.get("/owner", headers=headers)
    assert response.json()["error"] == error
    assert response.status_code == (403 if error == "access denied" else 401)
    if response.status_code == 401:
        assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BeArEr"])
async def test_the_bearer_scheme_is_case_insensitive(
    bare: tuple[httpx.AsyncClient, FastAPI], scheme: str
) -> None:
    client, _ = bare
    response = await client.get("/owner", headers={"Authorization": f"{scheme} {_token()}"})
    assert response.status_code == 200


async def test_download_takes_a_header_a_query_token_or_a_ticket(
    bare: tuple[httpx.AsyncClient, FastAPI],
) -> None:
    client, app = bare
    url = f"/download/{NAME}"
    by_header = await client.get(url, headers={"Authorization": f"Bearer {_token('h')}"})
    by_query = await client.get(url, params={"token": _token("q")})
    assert (by_header.json()["who"], by_query.json()["who"]) == ("h", "q")
    # The header wins over the query when both are sent.
    both = await client.get(
        url, params={"token": _token("q")}, headers={"Authorization": f"Bearer {_token('h')}"}
    )
    assert both.json()["who"] == "h"
    ticket, _ = app.state.tickets.issue("shop", NAME, "t")
    by_ticket = await client.get(url, params={"ticket": ticket})
    assert by_ticket.json() == {
        "who": "t",
        "via": "api",
        "source": "10.1.2.3",
        "request_id": by_ticket.headers["x-request-id"],
        "key_id": "",
        "owner": "",
    }
    again = await client.get(url, params={"ticket": ticket})
    assert again.status_code == 401
    other, _ = app.state.tickets.issue("shop", "backup-2024-12-09T10-30-46.sql", "t")
    assert (await client.get(url, params={"ticket": other})).status_code == 401
    elsewhere, _ = app.state.tickets.issue("crm", NAME, "t")  # another target's backup
    assert (await client.get(url, params={"ticket": elsewhere})).status_code == 401
    for unknown in ("nope", "*", ""):  # an unknown target is a ticket for nothing here
        refused = await client.get(url, params={"ticket": elsewhere, "target": unknown})
        assert refused.status_code == 401
        assert "crm" not in refused.text
    named = await client.get(url, params={"ticket": elsewhere, "target": "crm"})
    assert named.json()["who"] == "t"
    # A ticket is checked, never skipped in favour of a token that comes with it.
    assert (await client.get(url, params={"ticket": "x.y", "token": _token()})).status_code == 401
    assert (await client.get(url)).json()["error"] == "no authorization token"
    assert (await client.get("/owner", params={"token": _token()})).status_code == 401


async def test_refusal_details_say_what_to_send(bare: tuple[httpx.AsyncClient, FastAPI]) -> None:
    client, _ = bare
    missing = (await client.get("/owner")).json()
    assert missing == {
        "error": "no authorization token",
        "details": "send Authorization: Bearer <token>",
    }
    bad = (await client.get("/owner", headers={"Authorization": "Basic x"})).json()
    assert bad == {
        "error": "invalid authorization header",
        "details": "expected: Authorization: Bearer <token>",
    }


async def test_extra_spaces_after_the_scheme_are_tolerated(
    bare: tuple[httpx.AsyncClient, FastAPI],
) -> None:
    client, _ = bare
    response = await client.get("/owner", headers={"Authorization": f"Bearer   {_token()}"})
    assert response.status_code == 200


def test_an_actor_without_a_client_address_has_an_empty_source() -> None:
    """A server behind a Unix socket gives no client address: the actor's source is empty."""
    request = Request({"type": "http", "headers": [], "path": "/", "query_string": b""})
    actor = actor_of(request, Credential("owner", "alice"))
    assert (actor.who, actor.via, actor.source) == ("alice", "api", "")
    assert request.state.actor == actor
