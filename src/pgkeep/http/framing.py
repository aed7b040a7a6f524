"""Request framing as RFC 9112 §6 wants it, checked before h11 reads a body.

h11 frames a request that has both `Content-Length` and `Transfer-Encoding` by the
latter, and keeps the connection: a front end that framed it by `Content-Length`
sees one request where pgkeep answered two (request smuggling). RFC 9112 §6.1 lets a
server reject such a request and requires it to close the connection either way;
pgkeep rejects it (400) and closes, as it does a `Transfer-Encoding` in HTTP/1.0.
"""

from __future__ import annotations

import h11

GENERIC = "the request does not follow HTTP/1.1 syntax (RFC 9112)"


class StrictConnection(h11.Connection):
    """h11's server side, refusing a request whose framing is ambiguous; `refusal` says why
    the last request was refused (its own words, never the request's)."""

    refusal = GENERIC

    def next_event(self) -> h11.Event | type[h11.NEED_DATA] | type[h11.PAUSED]:
        try:
            event = super().next_event()
        except h11.RemoteProtocolError:
            self.refusal = GENERIC  # h11's message may quote a header, a token's included
            raise
        if isinstance(event, h11.Request):
            problem = ambiguous(event)
            if problem:
                self.refusal = problem
                raise h11.RemoteProtocolError(problem, error_status_hint=400)
        return event


def ambiguous(request: h11.Request) -> str:
    """Why the request's body length is ambiguous, or ""."""
    names = {name.lower() for name, _ in request.headers}
    if b"transfer-encoding" not in names:
        return ""
    if b"content-length" in names:
        return "both Content-Length and Transfer-Encoding: the body's length is ambiguous"
    if request.http_version == b"1.0":
        return "Transfer-Encoding in an HTTP/1.0 request: its framing is faulty (RFC 9112 §6.1)"
    return ""
