"""API keys: mint (the secret shown once), list (never a secret), revoke, and `self`: what
the calling credential may do (the console offers only allowed actions)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from pgkeep import formats
from pgkeep.core.apikeys import ApiKeys
from pgkeep.core.credentials import ApiKey
from pgkeep.http.auth import Caller, KeyManager, actor_of
from pgkeep.http.errors import NO_STORE, documented

router = APIRouter(
    prefix="/api/keys",
    tags=["keys"],
    responses=documented(
        (400, "Invalid input"),
        (401, "No authorization token, or an invalid, revoked or expired key"),
        (403, "Access denied (not OWNER role, or an API key without keys:manage)"),
        (429, "Too many failed API key attempts from this address"),
    ),
)


class KeyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(max_length=64, examples=["ci-shop"])
    scopes: list[str] = Field(max_length=20, examples=[["backups:create", "backups:read"]])
    targets: list[str] | None = Field(
        default=None, max_length=200, description="omitted: every target"
    )
    expiresIn: str | None = Field(  # noqa: N815 (the issue names the field)
        default=None, max_length=20, description="1s to 366d; default 90d; or never"
    )


def _keys(request: Request) -> ApiKeys:
    keys: ApiKeys = request.app.state.api_keys
    return keys


def _when(moment: datetime | None) -> str | None:
    return None if moment is None else formats.iso_ms(moment)


def key_json(key: ApiKey) -> dict[str, Any]:
    """A key as listed: never its secret, nor the secret's digest."""
    return {
        "id": key.id,
        "name": key.name,
        "scopes": list(key.scopes),
        "targets": None if key.targets is None else list(key.targets),
        "owner": key.owner,
        "parent": key.parent,
        "createdAt": _when(key.created_at),
        "expiresAt": _when(key.expires_at),
        "revokedAt": _when(key.revoked_at),
        "lastUsedAt": _when(key.last_used_at),
    }


@router.post("", status_code=201)
def create_key(body: KeyRequest, request: Request, credential: Caller) -> JSONResponse:
    """A new key; `key` is shown in this answer only, and stored nowhere."""
    actor = actor_of(request, credential)
    record, key = _keys(request).mint(
        credential, actor, body.name, body.scopes, body.targets, body.expiresIn
    )
    shown = {k: v for k, v in key_json(record).items() if k not in ("revokedAt", "lastUsedAt")}
    return JSONResponse({"success": True, **shown, "key": key}, status_code=201, headers=NO_STORE)


@router.get("")
def list_keys(request: Request, actor: KeyManager) -> dict[str, Any]:
    credential = request.state.credential
    keys = [
        key_json(k)
        for k in _keys(request).list()
        if credential.targets is None or (set(k.targets or ()) <= credential.targets and k.targets)
    ]
    return {"success": True, "keys": keys, "count": len(keys)}


@router.get("/self")
async def own_credential(request: Request, credential: Caller) -> dict[str, Any]:
    """The calling credential: its kind (owner or key), name, scopes, targets and expiry."""
    return {
        "success": True,
        "kind": credential.kind,
        "name": credential.name or credential.sub,
        "id": credential.key_id or None,
        "scopes": sorted(credential.scopes),
        "targets": None if credential.targets is None else sorted(credential.targets),
        "expiresAt": _when(credential.expires_at),
    }


@router.delete("/{key_id}", responses=documented((404, "No such key")))
async def revoke_key(key_id: str, request: Request, credential: Caller) -> dict[str, Any]:
    """Refused on every instance from the next request on (keys are never cached)."""
    actor = actor_of(request, credential)
    await run_in_threadpool(_keys(request).revoke, credential, actor, key_id)
    return {"success": True, "id": key_id}
