"""Log lines: one per event, escaped, tokens redacted by decoded name, floods rate-limited."""

from __future__ import annotations

import logging

import httpx
import pytest

from pgkeep import logs
from pgkeep.http.access_log import redact_query

pytestmark = pytest.mark.anyio


def test_escape_makes_control_characters_visible() -> None:
    assert logs.escape("a\nb\rc\x00d\x1b[31me\u2028f") == "a\\nb\\rc\\x00d\\x1b[31me\\u2028f"
    assert logs.escape("plain ünïcode") == "plain ünïcode"


@pytest.mark.parametrize(
    ("query", "shown"),
    [
        ("token=abc", "token=[REDACTED]"),
        ("%74oken=abc", "token=[REDACTED]"),  # the router decodes names, so must redaction
        ("TOKEN=abc&async=true", "TOKEN=[REDACTED]&async=true"),
        ("ticket=a.b&x=1", "ticket=[REDACTED]&x=1"),
        ("access_token=abc", "access_token=[REDACTED]"),
        ("a=1&token=x&token=y", "a=1&token=[REDACTED]&token=[REDACTED]"),
        ("tok%65n=abc", "token=[REDACTED]"),
        ("x=%0Aforged", "x=%0Aforged"),
    ],
)
def test_redact_query_by_decoded_name(query: str, shown: str) -> None:
    assert redact_query(query) == shown


async def test_no_request_can_forge_a_log_line(
    api: httpx.AsyncClient,
    token: str,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    logs.configure("INFO")
    caplog.set_level(logging.WARNING, logger="httpx")  # the test client's own lines
    await api.get("/api/backup/list%0A2099-01-01 00:00:00 INFO pgkeep.access forged")
    await api.get(f"/api/backup/download/x?%74oken={token}")
    await api.get("/api/backup/list", headers={"X-Request-Id": "a\nb"})
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.split()[3:4] == ["pgkeep.access"]]
    assert len(lines) == 3, "\n".join(lines)
    assert not any(line.startswith("2099") for line in err.splitlines())
    assert "\\n2099-01-01" in lines[0]
    assert token not in err
    assert "%74oken" not in err
    assert "token=[REDACTED]" in lines[1]


def test_repeated_warnings_are_rate_limited(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure("INFO")
    noisy = logging.getLogger("asyncio")
    for _ in range(5000):
        noisy.error("socket.accept() out of system resource")
    logging.getLogger("pgkeep.x").info("an ordinary line")
    err = capsys.readouterr().err
    assert err.count("out of system resource") == logs.RATE_LINES
    assert "an ordinary line" in err


def test_rate_limit_reports_what_it_suppressed() -> None:
    limiter = logs.RateLimit(window=0.0, lines=1)
    record = logging.LogRecord("asyncio", logging.ERROR, "", 0, "again %s", ("x",), None)
    first = limiter.filter(record)
    limited = logs.RateLimit(window=60.0, lines=1)
    assert limited.filter(record)
    assert not limited.filter(record)
    assert first
