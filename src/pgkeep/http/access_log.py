"""Access log and common headers, as plain ASGI middleware (downloads stream through untouched).

One line per request, with its request id (X-Request-Id, echoed back) and the
query string's credentials (`token`, `ticket`) redacted by their decoded name
(`?%74oken=` is `token` to the router, so it is to the redaction too); uvicorn's
own access log is switched off so no line ever carries them.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from urllib.parse import parse_qsl, quote

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pgkeep.core.events import scrub_keys
from pgkeep.http import zerocopy
from pgkeep.logs import request_id

logger = logging.getLogger("pgkeep.access")

SECRET_PARAMS = frozenset({"token", "ticket", "access_token"})
API_KEY_PREFIX = "pgk_"
_COMMON_HEADERS = [(b"x-content-type-options", b"nosniff")]


_GOOD_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


def _request_id(scope: Scope) -> str:
    """The caller's X-Request-Id when it is a sane token, else a new one."""
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            text = bytes(value).decode("latin-1")
            if _GOOD_ID.fullmatch(text) and API_KEY_PREFIX not in text:  # never a key
                return text
    return secrets.token_hex(8)


def redact_query(query: str) -> str:
    """The query with every credential's value replaced, judged by the decoded name, and
    any value shaped as an API key (`pgk_…`, refused in URLs but maybe pasted there)."""
    pairs = parse_qsl(query, keep_blank_values=True, errors="replace")
    return "&".join(
        f"{quote(name, safe='')}="
        + ("[REDACTED]" if _secret(name, value) else quote(value, safe=""))
        for name, value in pairs
    )


def _secret(name: str, value: str) -> bool:
    return name.strip().lower() in SECRET_PARAMS or API_KEY_PREFIX in value


class AccessLogMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        status = 0
        sent = 0
        rid = _request_id(scope)
        token = request_id.set(rid)

        async def send_wrapper(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [
                    *message.get("headers", []),
                    *_COMMON_HEADERS,
                    (b"x-request-id", rid.encode()),
                ]
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            elif message["type"] == zerocopy.EXTENSION:
                sent += int(message["count"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            query = redact_query(scope.get("query_string", b"").decode("latin-1"))
            # A key pasted into a path, or as a query's name, is no more logged than a value.
            target = scrub_keys(scope["path"] + (f"?{query}" if query else ""))
            client = scope.get("client") or ("-", 0)
            logger.info(
                '%s "%s %s" %d %dB %dms rid=%s',
                client[0],
                scope["method"],
                target,
                status,
                sent,
                (time.monotonic() - started) * 1000,
                rid,
            )
            request_id.reset(token)
