"""Who may call: an OWNER bearer token (every right), or an API key (`pgk_…`, its scopes and
targets). Each route names the scope it needs (`Scoped`); OWNER tokens hold every scope.

The credential is found once per request (kept on `request.state`) and answered as an
`Actor` (the token's subject or the key's name, the client address, the request id),
which the core's events, and so the audit log, carry.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from pgkeep.core.apikeys import PREFIX, ApiKeys
from pgkeep.core.credentials import Credential
from pgkeep.core.events import Actor
from pgkeep.errors import AuthError, Forbidden
from pgkeep.logs import request_id
from pgkeep.tickets import TicketIssuer
from pgkeep.tokens import TokenVerifier


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError("invalid authorization header", "expected: Authorization: Bearer <token>")
    return token.strip()


def _client(request: Request) -> str:
    return request.client.host if request.client else ""


def actor_of(request: Request, credential: Credential) -> Actor:
    client, rid = _client(request), request_id.get()
    if credential.kind == "key":
        actor = Actor(credential.name, "key", client, rid, credential.key_id, credential.sub)
    else:
        actor = Actor(credential.sub, "api", client, rid)
    request.state.actor = actor  # for the refusals the audit records at the edge
    return actor


async def _check(request: Request, token: str | None) -> Credential:
    if token is None:
        raise AuthError("no authorization token", "send Authorization: Bearer <token>")
    if token.startswith(PREFIX):
        keys: ApiKeys = request.app.state.api_keys
        credential = await run_in_threadpool(keys.authenticate, token, _client(request))
    else:
        verifier: TokenVerifier = request.app.state.verifier
        # A JWKS lookup may block on the network; keep it off the event loop.
        principal = await run_in_threadpool(verifier.verify, token)
        credential = Credential("owner", principal.sub)
    request.state.credential = credential
    actor_of(request, credential)
    return credential


async def authenticate(request: Request) -> Credential:
    """The request's credential, OWNER token or API key, checked once per request."""
    known: Credential | None = getattr(request.state, "credential", None)
    return known if known is not None else await _check(request, _bearer(request))


async def require_owner(request: Request) -> Actor:
    """An OWNER token itself, not a key (readiness details)."""
    credential = await authenticate(request)
    if credential.kind != "owner":
        raise Forbidden("access denied", "an OWNER token is required, not an API key")
    return actor_of(request, credential)


class Scoped:
    """A dependency: the caller, if its credential holds `scope` (403 naming it otherwise)."""

    def __init__(self, scope: str) -> None:
        self.scope = scope

    async def __call__(self, request: Request) -> Actor:
        credential = await authenticate(request)
        credential.require(self.scope)
        return actor_of(request, credential)


async def require_download_access(request: Request) -> Actor:
    """The download route: a bearer token or key, `?token=` (the spec's browser download,
    never a key: keys stay out of URLs), or a single-use `?ticket=` bound to the file."""
    ticket = request.query_params.get("ticket")
    if ticket is not None:
        issuer: TicketIssuer = request.app.state.tickets
        # An unknown ?target= is a ticket for nothing here: 401, naming no target.
        target = request.app.state.target_of(request.query_params.get("target")) or ""
        sub, key_id = issuer.redeem_as(ticket, target, request.path_params.get("filename", ""))
        # The ticket is the permission, bound to one file of one target. One an API key
        # asked for is used as that key, if it still stands (not revoked or expired since).
        credential = Credential("owner", sub)
        if key_id:
            keys: ApiKeys = request.app.state.api_keys
            credential = await run_in_threadpool(keys.standing, key_id)
        request.state.credential = credential
        return actor_of(request, credential)
    token = _bearer(request)
    if token is None:
        token = request.query_params.get("token")
        if token is not None and token.startswith(PREFIX):
            raise AuthError("API keys are never sent in a URL", "ask for a download link")
    credential = await _check(request, token)
    credential.require("backups:download")
    return actor_of(request, credential)


Caller = Annotated[Credential, Depends(authenticate)]
Owner = Annotated[Actor, Depends(require_owner)]
DownloadAccess = Annotated[Actor, Depends(require_download_access)]
Reader = Annotated[Actor, Depends(Scoped("backups:read"))]
Creator = Annotated[Actor, Depends(Scoped("backups:create"))]
Downloader = Annotated[Actor, Depends(Scoped("backups:download"))]
Verifier = Annotated[Actor, Depends(Scoped("backups:verify"))]
Restorer = Annotated[Actor, Depends(Scoped("backups:restore"))]
Deleter = Annotated[Actor, Depends(Scoped("backups:delete"))]
Pinner = Annotated[Actor, Depends(Scoped("backups:pin"))]
AuditReader = Annotated[Actor, Depends(Scoped("audit:read"))]
KeyManager = Annotated[Actor, Depends(Scoped("keys:manage"))]
