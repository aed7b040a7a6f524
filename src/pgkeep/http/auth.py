"""The bearer-token dependency: every /api/backup route requires the OWNER role."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from pgkeep.errors import AuthError
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
    return await run_in_threadpool(verifier.verify, token)


async def require_owner(request: Request) -> Principal:
    return await _verify(request, _bearer(request))


async def require_owner_allow_query(request: Request) -> Principal:
    """As require_owner, but also accepts `?token=` (the spec's browser download)."""
    token = _bearer(request) or request.query_params.get("token")
    return await _verify(request, token)


Owner = Annotated[Principal, Depends(require_owner)]
OwnerOrQueryToken = Annotated[Principal, Depends(require_owner_allow_query)]
