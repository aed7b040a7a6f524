"""Recording audited requests: who (the token's sub), from where, what, and the result.

Runs after each response, so refusals and failures are recorded as well as successes.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pgkeep import formats
from pgkeep.errors import PgkeepError
from pgkeep.logs import request_id
from pgkeep.storage.audit import AuditLog

logger = logging.getLogger(__name__)

_ACTIONS = [
    ("POST", re.compile(r"/api/backup/create"), "create"),
    ("GET", re.compile(r"/api/backup/download/(?P<t>.+)"), "download"),
    ("POST", re.compile(r"/api/backup/download-link/(?P<t>.+)"), "download-link"),
    ("POST", re.compile(r"/api/backup/(?P<t>.+)/verify"), "verify"),
    ("POST", re.compile(r"/api/backup/(?P<t>.+)/restore"), "restore"),
    ("POST", re.compile(r"/api/backup/(?P<t>.+)/pin"), "pin"),
    ("DELETE", re.compile(r"/api/backup/(?P<t>.+)/pin"), "unpin"),
    ("DELETE", re.compile(r"/api/backup/jobs/(?P<t>[^/]+)"), "cancel-job"),
    ("DELETE", re.compile(r"/api/backup/(?P<t>.+)"), "delete"),
]


def action_for(method: str, path: str) -> tuple[str, str] | None:
    for verb, pattern, action in _ACTIONS:
        match = pattern.fullmatch(path)
        if method == verb and match:
            return action, match.groupdict().get("t") or ""
    return None


class AuditMiddleware:
    def __init__(self, app: ASGIApp, log: AuditLog) -> None:
        self.app = app
        self.log = log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        found = action_for(scope["method"], scope["path"]) if scope["type"] == "http" else None
        if found is None:
            await self.app(scope, receive, send)
            return
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            principal = scope.get("state", {}).get("principal")
            client = scope.get("client") or ("", 0)
            try:
                self.log.append(
                    at=formats.iso_ms(datetime.now(UTC)),
                    who=getattr(principal, "sub", None),
                    source=client[0],
                    action=found[0],
                    target=found[1][:200],
                    status=status,
                    result="ok" if status < 400 else "refused" if status < 500 else "failed",
                    request_id=request_id.get(),
                )
            except PgkeepError as exc:
                logger.error("audit log: %s", exc.message)
