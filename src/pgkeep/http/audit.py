"""Refusals at the edge, in the audit log: requests an audited route turned away before the core.

The core records every action it performs or refuses, with its actor, from
every entry point. What never reaches it (no token, a forged or expired one,
the wrong role, a malformed body, a full queue) is recorded here, for the route
the router actually matched, never for a pattern matched against the raw path.
"""

from __future__ import annotations

import contextvars
import logging
from datetime import UTC, datetime
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pgkeep import formats
from pgkeep.core.audit import Trail
from pgkeep.core.events import Event, scrub_keys
from pgkeep.errors import PgkeepError
from pgkeep.logs import request_id

logger = logging.getLogger(__name__)

# The audited routes, by endpoint name, and the action each performs.
ACTIONS = {
    "create_backup": "create",
    "download_backup": "download",
    "download_link": "download-link",
    "verify_backup": "verify",
    "restore_backup": "restore",
    "pin_backup": "pin",
    "unpin_backup": "unpin",
    "delete_backup": "delete",
    "cancel_job": "cancel-job",
    "create_key": "key-create",
    "revoke_key": "key-revoke",
}
_core_events: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar(
    "pgkeep_core_events", default=None
)


def note_core_event(event: Event) -> None:
    """An events listener: tells the request in flight (if any) that the core recorded it."""
    seen = _core_events.get()
    if seen is not None:
        seen.append(event.action)


class AuditRefusals:
    def __init__(self, app: ASGIApp, log: Trail) -> None:
        self.app = app
        self.log = log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        seen: list[str] = []
        token = _core_events.set(seen)

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            _core_events.reset(token)
            route = scope.get("route")
            action = ACTIONS.get(getattr(route, "name", ""))
            if action is not None and status >= 400 and not seen:
                self._record(scope, action, status)

    def _record(self, scope: Scope, action: str, status: int) -> None:
        actor = scope.get("state", {}).get("actor")
        client = scope.get("client") or ("", 0)
        params = scope.get("path_params", {})
        query = scope.get("query_string", b"").decode("latin-1")
        try:
            self.log.append(
                at=formats.iso_ms(datetime.now(UTC)),
                who=getattr(actor, "who", None),
                via=getattr(actor, "via", "api"),
                source=client[0],
                action=action,
                target=_target(query),
                backup=scrub_keys(str(params.get("filename") or params.get("job_id") or ""))[:200]
                or None,
                result="refused" if status < 500 else "failed",
                status=status,
                request_id=request_id.get(),
                **_key_fields(actor),
            )
        except PgkeepError as exc:
            logger.error("audit log: %s", exc.message)


def _key_fields(actor: object) -> dict[str, str]:
    key_id = str(getattr(actor, "key_id", ""))
    return {"apiKeyId": key_id, "owner": str(getattr(actor, "owner", ""))} if key_id else {}


def _target(query: str) -> str:
    """The request's `?target=`; every one given, when it was repeated (refused, 400)."""
    values = [v for k, v in parse_qsl(query, keep_blank_values=True) if k == "target"]
    return scrub_keys(",".join(values))[:200]
