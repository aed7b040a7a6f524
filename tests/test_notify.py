"""Alerts to a local webhook receiver: signed, retried, never blocking; Apprise too."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from pgkeep.config import Settings
from pgkeep.http.app import create_app
from pgkeep.local.episodes import LocalEpisodes
from pgkeep.local.state import StateFile
from pgkeep.notify import Message, Notifier, signature

NOTIFY_SECRET = "n0tify-" + "s3cret-k9Qw7ZpL2mXv8RbN4cYd"


@dataclass
class Receiver:
    url: str
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    fail_next: int = 0

    def wait_for(self, count: int, timeout: float = 20) -> list[tuple[dict[str, str], bytes]]:
        deadline = time.monotonic() + timeout
        while len(self.received) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.received


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver("")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if state.fail_next > 0:
                state.fail_next -= 1
                self.send_response(500)
            else:
                state.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    yield state
    server.shutdown()
    server.server_close()


def _app_with(make_settings: Callable[..., Settings], **overrides: Any) -> Any:
    app = create_app(make_settings(notify_secret=NOTIFY_SECRET, **overrides))
    app.state.runtime.notifier._backoff = 0.01  # retries in tests without waiting seconds
    return app


@pytest.mark.anyio
async def test_failed_backup_sends_a_signed_webhook(
    make_settings: Callable[..., Settings], receiver: Receiver, auth: dict[str, str]
) -> None:
    app = _app_with(
        make_settings,
        notify_urls=receiver.url,
        database_url="postgresql://postgres:pw-secret@127.0.0.1:1/gone",
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as api:
        assert (await api.post("/api/backup/create", headers=auth)).status_code == 500
    [(headers, body)] = receiver.wait_for(1)
    assert headers["x-pgkeep-event"] == "backup.failed"
    assert headers["x-pgkeep-signature"] == signature(NOTIFY_SECRET, body)
    assert headers["x-pgkeep-signature"] != signature("wrong", body)
    event = json.loads(body)
    assert event["event"] == "backup.failed"
    assert event["target"] == "gone"
    assert "cannot connect to database 'gone'" in event["text"]
    assert "pw-secret" not in body.decode()


@pytest.mark.anyio
async def test_success_notices_are_opt_in(
    make_settings: Callable[..., Settings], receiver: Receiver, auth: dict[str, str]
) -> None:
    for opt_in in (False, True):
        app = _app_with(make_settings, notify_urls=receiver.url, notify_success=opt_in)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as api:
            assert (await api.post("/api/backup/create", headers=auth)).status_code == 200
        time.sleep(0.3)
    events = [json.loads(body)["event"] for _, body in receiver.wait_for(1)]
    assert events == ["backup.succeeded"]


def test_delivery_is_retried_with_backoff(receiver: Receiver) -> None:
    receiver.fail_next = 2
    notifier = Notifier((receiver.url,), NOTIFY_SECRET, backoff_seconds=0.01)
    notifier.send(Message("verify.failed", "db", datetime.now(UTC), "sha256 mismatch", "b.sql"))
    [(headers, _)] = receiver.wait_for(1)
    assert headers["x-pgkeep-event"] == "verify.failed"
    assert notifier.delivered == 1


def test_undeliverable_alert_is_logged_and_given_up(caplog: pytest.LogCaptureFixture) -> None:
    notifier = Notifier(("http://127.0.0.1:1/nowhere",), NOTIFY_SECRET, backoff_seconds=0.001)
    notifier.send(Message("backup.failed", "db", datetime.now(UTC), "x"))
    deadline = time.monotonic() + 20
    while notifier.failed == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert notifier.failed == 1
    assert any("given up after 5 attempts" in r.getMessage() for r in caplog.records)


def test_stale_alert_fires_once_and_rearms_after_success(receiver: Receiver) -> None:
    notifier = Notifier((receiver.url,), NOTIFY_SECRET, backoff_seconds=0.01)
    now = datetime(2025, 1, 2, 12, tzinfo=UTC)
    day = timedelta(hours=26)
    assert notifier.check_stale("db", now - timedelta(hours=2), now, day) is False
    assert notifier.check_stale("db", now - timedelta(hours=30), now, day) is True
    assert notifier.check_stale("db", now - timedelta(hours=31), now, day) is False
    assert notifier.check_stale("db", None, now, day) is False  # still the same episode
    assert notifier.check_stale("db", now, now, day) is False  # a success re-arms it
    assert notifier.check_stale("db", now - timedelta(days=3), now, day) is True
    events = [json.loads(body) for _, body in receiver.wait_for(2)]
    assert [e["event"] for e in events] == ["backup.stale", "backup.stale"]
    assert "longer than 26h (last:" in events[0]["text"]  # as people write it


def test_stale_alerts_are_one_per_episode_across_restarts_and_only_once_due(
    receiver: Receiver, tmp_path: Path
) -> None:
    """With stale_after = 26h, every target alerted a second after the first start, again on
    every restart, and a database found later alerted the moment it appeared (12 false
    alerts in 7 minutes). Now a target with no backup is stale only once it has existed
    26h, and an episode told is told once, whichever process (restart) looks."""
    state = StateFile(tmp_path / "state")
    start = datetime(2025, 1, 2, 12, tzinfo=UTC)
    limit = timedelta(hours=26)

    def process() -> Notifier:  # each a fresh process (a restart), sharing the state file
        return Notifier(
            (receiver.url,), NOTIFY_SECRET, backoff_seconds=0.01, episodes=LocalEpisodes(state)
        )

    assert process().check_stale("new", None, start, limit) is False  # just seen
    assert process().check_stale("new", None, start + timedelta(hours=25), limit) is False
    assert process().check_stale("new", None, start + timedelta(hours=27), limit) is True
    assert process().check_stale("new", None, start + timedelta(hours=28), limit) is False
    old = start - timedelta(hours=40)
    assert process().check_stale("old", old, start, limit) is True  # a backup 40h old: due
    assert process().check_stale("old", old, start + timedelta(minutes=7), limit) is False
    assert process().check_stale("old", start, start, limit) is False  # a success ends it
    later = start + timedelta(hours=30)
    assert process().check_stale("old", start, later, limit) is True  # a new episode
    events = [json.loads(body)["target"] for _, body in receiver.wait_for(3)]
    assert sorted(events) == ["new", "old", "old"]


def test_apprise_urls_are_delivered_through_apprise(receiver: Receiver) -> None:
    apprise_url = receiver.url.replace("http://", "json://")
    notifier = Notifier((apprise_url,), None, backoff_seconds=0.01)
    notifier.send(Message("backup.failed", "db", datetime.now(UTC), "pg_dump failed"))
    [(headers, body)] = receiver.wait_for(1)
    payload = json.loads(body)
    assert payload["title"] == "pgkeep: backup.failed"
    assert payload["message"] == "pg_dump failed"
    assert "x-pgkeep-signature" not in headers


def test_webhooks_need_a_secret(make_settings: Callable[..., Settings]) -> None:
    from pgkeep.errors import ConfigError

    with pytest.raises(ConfigError, match="PGKEEP_NOTIFY_SECRET: required"):
        make_settings(notify_urls="http://127.0.0.1:9/hook")
