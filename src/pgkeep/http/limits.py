"""Limits every request meets before routing or auth: a sane path, a small body.

A path whose decoded form holds a control character is refused with 400: the
router's patterns end in `$`, which matches before a trailing newline, so
`DELETE /api/backup/NAME%0A` used to delete NAME. No route takes more than a
small JSON object, so a body over the limit is refused from its Content-Length
at once (413); a chunked one is cut off as soon as it passes the limit. Nothing
past the limit is ever buffered or parsed.
"""

from __future__ import annotations

import json
import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class RequestLimits:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if _CONTROL.search(scope["path"]):
            await _refuse(send, 400, "Invalid request path", "control characters in the path")
            return
        length = dict(scope.get("headers", [])).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            await _refuse(send, 413, _TOO_LARGE, f"at most {self.max_bytes} bytes")
            return
        received = 0
        too_large = False
        started = False

        async def limited() -> Message:
            nonlocal received, too_large
            if too_large:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    too_large = True
                    return {"type": "http.disconnect"}
            return message

        async def tracked(message: Message) -> None:
            nonlocal started
            if too_large and not started:
                return  # the app's answer to a cut-off body is replaced by the 413
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited, tracked)
        except Exception:
            if not too_large:
                raise
        if too_large and not started:
            await _refuse(send, 413, _TOO_LARGE, f"at most {self.max_bytes} bytes")


_TOO_LARGE = "Request body too large"


async def _refuse(send: Send, status: int, error: str, details: str) -> None:
    body = json.dumps({"error": error, "details": details}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
                (b"cache-control", b"no-store"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
