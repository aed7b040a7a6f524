"""Which target a request may reach: every one for an OWNER token, only its own for an API
key limited to some. A key is refused (403) a target outside its own before the name is
looked up, so it never learns whether that target exists."""

from __future__ import annotations

from fastapi import Request

from pgkeep.core.credentials import Credential
from pgkeep.core.service import BackupService
from pgkeep.errors import Forbidden, InvalidInput
from pgkeep.runtime import Runtime


def service_for(request: Request, credential: Credential, target: str | None) -> BackupService:
    """The target's service, for a caller already authenticated."""
    runtime: Runtime = request.app.state.runtime
    one_target(request)
    if credential.targets is None:
        return runtime.service(target)
    if target is not None:
        credential.require_target(target)
    try:
        service = runtime.service(target)
    except InvalidInput:  # the default is ambiguous; its message names every target
        if target is None:
            raise InvalidInput("no target named", "this API key needs ?target=") from None
        raise Forbidden("access denied", "this API key is not for that target") from None
    credential.require_target(service.target)
    return service


def one_target(request: Request) -> None:
    """A request naming ?target= more than once is refused (the router takes the last, the
    audit would have recorded another)."""
    if len(request.query_params.getlist("target")) > 1:
        raise InvalidInput("?target= given more than once", "name one target")


def visible(request: Request, target: str) -> bool:
    """Whether the request's credential may see `target` in lists (jobs, targets, audit)."""
    credential: Credential | None = getattr(request.state, "credential", None)
    return credential is not None and credential.allows(target)
