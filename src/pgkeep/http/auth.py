"""The bearer-token dependencies: every /api/backup route requires the OWNER role.

Each answers the caller as an `Actor` (the token's subject, the client address
and the request id), which the core's events, and so the audit log, carry.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from pgkeep.core.events import Actor
from pgkeep.errors import AuthError
from pgkeep.logs import request_id
from pgkeep.tickets import TicketIssuer
from pgkeep.tokens import Principal, TokenVerifier


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError("invalid authorization header", "expected: Authorization: Bearer <token>")
    return token.strip()


def _actor(request: Request, principal: Principal) -> Actor:
    request.state.principal = principal  # for the refusals the audit records at the edge
    client = request.client.host if request.client else ""
    return Actor(principal.sub, "api", client, request_id.get())


async def _verify(request: Request, token: str | None) -> Actor:
    if token is None:
        raise AuthError("no authorization token", "send Authorization: Bearer <token>")
    verifier: TokenVerifier = request.app.state.verifier
    # A JWKS lookup may block on the network; keep it off the event loop.
    principal = await run_in_threadpool(verifier.verify, token)
    return _actor(request, principal)


async def require_owner(request: Request) -> Actor:
    return await _verify(request, _bearer(request))


async def require_download_access(request: Request) -> Actor:
    """The download route: a bearer token, `?token=` (the spec's browser download), or a
    single-use `?ticket=` bound to the requested file."""
    ticket = request.query_params.get("ticket")
    if ticket is not None:
        issuer: TicketIssuer = request.app.state.tickets
        # An unknown ?target= is a ticket for nothing here: 401, naming no target.
        target = request.app.state.target_of(request.query_params.get("target")) or ""
        sub = issuer.redeem(ticket, target, request.path_params.get("filename", ""))
        return _actor(request, Principal(sub=sub, role="OWNER"))
    token = _bearer(request) or request.query_params.get("token")
    return await _verify(request, token)


Owner = Annotated[Actor, Depends(require_owner)]
DownloadAccess = Annotated[Actor, Depends(require_download_access)]
