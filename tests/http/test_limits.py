"""The request limits on their own, as an ASGI middleware in front of a small app: a path with a
control character is refused with 400, a body past the limit with 413 (from its
Content-Length at once, or as soon as a chunked one passes it), and nothing else is touched."""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest
from starlette.types import Message, Receive, Scope, Send

from pgkeep.http.limits import RequestLimits

LIMIT = 10


class _App:
    """Reads the whole body (as a route that takes JSON does), then answers 200 with it; with
    `early` it starts its answer first (a streaming echo); with `silent` it answers nothing."""

    def __init__(self, *, fail: bool = False, early: bool = False, silent: bool = False) -> None:
        self.called = False
        self.fail = fail
        self.early = early
        self.silent = silent
        self.received: list[Message] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.called = True
        if scope["type"] != "http":
            self.received.append(await receive())
            await send({"type": "lifespan.startup.complete"})
            return
        if self.early:
            await send({"type": "http.response.start", "status": 200, "headers": []})
        body = b""
        while True:
            message = await receive()
            self.received.append(message)
            if message["type"] == "http.disconnect":
                if self.fail:
                    raise RuntimeError("the client went away")
                break
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        if self.silent:
            return
        if not self.early:
            await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})


def _run(
    app: _App,
    path: str = "/api/backup",
    bodies: list[bytes] | None = None,
    headers: list[tuple[bytes, bytes]] | None = None,
    scope_type: str = "http",
    *,
    ended: bool = True,
) -> list[Message]:
    """What the middleware sends for one request; with `ended` false the client goes away
    after its last chunk instead of ending the body."""
    sent: list[Message] = []
    chunks = list(bodies or [b""])
    received: list[Message] = [
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1 or not ended}
        for i, c in enumerate(chunks)
    ]

    async def receive() -> Message:
        return received.pop(0) if received else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    scope: dict[str, Any] = {"type": scope_type, "path": path, "headers": headers or []}
    anyio.run(RequestLimits(app, LIMIT), scope, receive, send)
    return sent


def _answer(sent: list[Message]) -> tuple[int, dict[bytes, bytes], bytes]:
    start, *bodies = sent
    assert start["type"] == "http.response.start"
    assert [m["type"] for m in bodies] == ["http.response.body"] * len(bodies)
    return start["status"], dict(start["headers"]), b"".join(m["body"] for m in bodies)


def test_a_request_within_the_limits_reaches_the_app_as_it_is() -> None:
    app = _App()
    sent = _run(app, bodies=[b"12345", b"67890"], headers=[(b"content-length", b"10")])
    assert app.called
    assert _answer(sent) == (200, {}, b"1234567890")


@pytest.mark.parametrize("character", ["\n", "\r", "\x00", "\t", "\x1f", "\x7f"])
def test_a_path_with_a_control_character_is_refused_before_the_app(character: str) -> None:
    app = _App()
    status, headers, body = _answer(_run(app, path=f"/api/backup/x{character}"))
    assert not app.called
    assert status == 400
    assert json.loads(body) == {
        "error": "Invalid request path",
        "details": "control characters in the path",
    }
    assert headers == {
        b"content-type": b"application/json",
        b"content-length": str(len(body)).encode(),
        b"connection": b"close",
        b"cache-control": b"no-store",
    }


def test_a_path_of_printable_characters_is_let_through() -> None:
    app = _App()
    assert _answer(_run(app, path="/api/backup/ x~\x80é"))[0] == 200


@pytest.mark.parametrize("length", [b"11", b"999999999999", b"-1", b"1e3", b" 5", b""])
def test_a_declared_length_past_the_limit_or_not_a_number_is_refused_at_once(
    length: bytes,
) -> None:
    app = _App()
    status, _, body = _answer(_run(app, headers=[(b"content-length", length)]))
    assert not app.called
    assert status == 413
    assert json.loads(body) == {
        "error": "Request body too large",
        "details": f"at most {LIMIT} bytes",
    }


def test_a_body_of_exactly_the_limit_is_taken() -> None:
    app = _App()
    sent = _run(app, bodies=[b"x" * LIMIT], headers=[(b"content-length", b"10")])
    assert _answer(sent) == (200, {}, b"x" * LIMIT)


@pytest.mark.parametrize("fail", [False, True])
def test_a_chunked_body_is_cut_off_once_past_the_limit(fail: bool) -> None:
    """The app's own answer to the cut-off body (or its failure) is replaced by the 413."""
    app = _App(fail=fail)
    status, _, body = _answer(_run(app, bodies=[b"x" * 6, b"y" * 5]))
    assert app.received[-1] == {"type": "http.disconnect"}  # never the chunk past the limit
    assert [m.get("body") for m in app.received[:-1]] == [b"x" * 6]
    assert status == 413
    assert json.loads(body) == {"error": "Request body too large", "details": "at most 10 bytes"}


def test_a_cut_off_body_is_all_an_app_reads_however_often_it_asks() -> None:
    """Past the limit, every later receive is a disconnect: the rest is never read."""

    class Greedy(_App):
        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            for _ in range(4):
                self.received.append(await receive())

    app = Greedy()
    status, _, _ = _answer(_run(app, bodies=[b"x" * 11, b"y"]))
    assert status == 413
    assert app.received == [{"type": "http.disconnect"}] * 4


def test_an_answer_already_started_is_never_replaced() -> None:
    """An app that started its answer before the body passed the limit: its answer goes on
    (a second start would break the protocol); what it read stops at the limit."""
    app = _App(early=True)
    sent = _run(app, bodies=[b"x" * 6, b"y" * 5])
    assert _answer(sent) == (200, {}, b"x" * 6)


def test_an_app_that_answers_nothing_gets_nothing_added() -> None:
    assert _run(_App(silent=True), bodies=[b"12345"]) == []


def test_a_chunked_body_within_the_limit_is_taken() -> None:
    app = _App()
    assert _answer(_run(app, bodies=[b"x" * 5, b"y" * 5])) == (200, {}, b"x" * 5 + b"y" * 5)


def test_an_app_failure_of_its_own_is_not_hidden() -> None:
    """A client gone within the limit: the app's failure is its own, raised as it was."""
    with pytest.raises(RuntimeError, match="went away"):
        _run(_App(fail=True), bodies=[b"1"], ended=False)


def test_other_scopes_are_passed_through_untouched() -> None:
    app = _App()
    assert _run(app, path="/\n", scope_type="lifespan") == [{"type": "lifespan.startup.complete"}]
    assert app.received == [{"type": "http.request", "body": b"", "more_body": False}]


def test_a_request_without_headers_is_taken() -> None:
    app = _App()
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"{}"}

    async def send(message: Message) -> None:
        sent.append(message)

    anyio.run(RequestLimits(app, LIMIT), {"type": "http", "path": "/"}, receive, send)
    assert _answer(sent) == (200, {}, b"{}")
