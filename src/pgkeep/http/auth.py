"""The bearer-token dependency: every /api/backup route requires the OWNER role."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from pgkeep.errors import AuthError
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


async def _verify(request: Request, token: str | None) -> Principal:
    if token is None:
        raise AuthError("no authorization token", "send Authorization: Bearer <token>")
    verifier: TokenVerifier = request.app.state.verifier
    # A JWKS lookup may block on the network; keep it off the event loop.
    principal = await run_in_threadpool(verifier.verify, token)
    request.state.principal = principal  # for the audit log
    return principal


async def require_owner(request: Request) -> Principal:
    return await _verify(request, _bearer(request))


async def require_download_access(request: Request) -> Principal:
    """The download route: a bearer token, `?token=` (the spec's browser download), or a
    single-use `?ticket=` bound to the requested file."""
    ticket = request.query_params.get("ticket")
    if ticket is not None:
        issuer: TicketIssuer = request.app.state.tickets
        sub = issuer.redeem(ticket, request.path_params.get("filename", ""))
        principal = Principal(sub=sub, role="OWNER")
        request.state.principal = principal  # for the audit log
        return principal
    token = _bearer(request) or request.query_params.get("token")
    return await _verify(request, token)


Owner = Annotated[Principal, Depends(require_owner)]
DownloadAccess = Annotated[Principal, Depends(require_download_access)]
