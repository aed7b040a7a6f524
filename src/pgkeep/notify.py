"""Alerts: failed backups, failed verifies, stale backups and drift, told to people and systems.

`http(s)://` URLs get a plain webhook: a JSON body signed with HMAC-SHA256 of
PGKEEP_NOTIFY_SECRET in `X-Pgkeep-Signature: sha256=<hex>`. Any other URL is an
Apprise URL (Slack, e-mail, Telegram…). Delivery runs on its own thread with
retries and exponential backoff; a failed delivery is logged and never blocks
or fails a backup.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import queue
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import apprise

from pgkeep import formats
from pgkeep.core.events import Event
from pgkeep.core.ports import Episodes
from pgkeep.errors import PgkeepError

logger = logging.getLogger(__name__)

ATTEMPTS = 5
_KINDS = {"create": "backup", "verify": "verify", "copy": "copy"}  # core actions → alert kinds


@dataclass(frozen=True)
class Message:
    event: str  # backup.failed, verify.failed, verify.environment, verify.rehearsal,
    # backup.stale, backup.drift, backup.succeeded
    target: str
    at: datetime
    text: str
    filename: str | None = None

    def body(self) -> dict[str, Any]:
        return {
            "event": self.event,
            "target": self.target,
            "at": formats.iso_ms(self.at),
            "filename": self.filename,
            "text": self.text,
        }


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class Notifier:
    def __init__(
        self,
        urls: tuple[str, ...],
        secret: str | None,
        *,
        send_success: bool = False,
        backoff_seconds: float = 2.0,
        episodes: Episodes | None = None,
    ) -> None:
        self._urls = urls
        self._secret = secret
        self._send_success = send_success
        self._backoff = backoff_seconds
        self._queue: queue.Queue[tuple[str, Message]] = queue.Queue()
        self._episodes = episodes  # kept where jobs are; in memory without (or while down)
        self._stale_since: dict[str, datetime] = {}  # per target: since when it is stale
        self._seen: dict[str, datetime] = {}
        self.delivered = 0
        self.failed = 0
        if urls:
            threading.Thread(target=self._deliver_forever, daemon=True).start()

    def on_event(self, event: Event) -> None:
        """A listener of core events: failed creates and verifies, and successes if asked."""
        kind = _KINDS.get(event.action)
        if kind is None:
            return
        if kind == "verify":
            self._findings(event)
        if event.outcome == "failed":
            what = {
                "backup": "backup",
                "verify": f"verify of {event.filename}",
                "copy": f"copy of {event.filename} to {event.store}",
            }[kind]
            self.send(
                Message(
                    f"{kind}.failed",
                    event.target,
                    event.at,
                    f"{what} of {event.target!r} failed: {event.error}",
                    event.filename,
                )
            )
        elif event.outcome == "succeeded" and kind == "backup":
            self._close_stale(event.target)
            if event.drift:
                self.send(
                    Message(
                        "backup.drift",
                        event.target,
                        event.at,
                        f"backup {event.filename} of {event.target!r} holds much less than "
                        f"the one before it, which is now pinned: {event.drift}",
                        event.filename,
                    )
                )
            if self._send_success:
                self.send(
                    Message(
                        "backup.succeeded",
                        event.target,
                        event.at,
                        f"backup {event.filename} of {event.target!r} succeeded "
                        f"({event.size_bytes} bytes)",
                        event.filename,
                    )
                )

    def _findings(self, event: Event) -> None:
        """A verify the verify server could not conclude, and rehearsals that failed: told
        apart from verify.failed, as neither is a fault of the backup."""
        if event.environment:
            self.send(
                Message(
                    "verify.environment",
                    event.target,
                    event.at,
                    f"verify of {event.filename} of {event.target!r} is inconclusive, the "
                    f"backup is not at fault: {event.environment}",
                    event.filename,
                )
            )
        if event.rehearsal:
            self.send(
                Message(
                    "verify.rehearsal",
                    event.target,
                    event.at,
                    f"backup {event.filename} of {event.target!r} did not restore into "
                    f"another major: {event.rehearsal}",
                    event.filename,
                )
            )

    def check_stale(
        self, target: str, last_success: datetime | None, now: datetime, stale_after: timedelta
    ) -> bool:
        """Alert once per episode when the newest good backup is older than `stale_after`; a
        target with none is stale only once it has existed (been seen) that long."""
        if last_success is not None and now - last_success <= stale_after:
            self._close_stale(target)
            return False
        if last_success is None and now - self._first_seen(target, now) < stale_after:
            return False
        if not self._open_stale(target, now):
            return False  # already told
        since = formats.iso_ms(last_success) if last_success else "never"
        self.send(
            Message(
                "backup.stale",
                target,
                now,
                f"no successful backup of {target!r} for longer than "
                f"{formats.duration(stale_after)} (last: {since})",
            )
        )
        return True

    def _first_seen(self, target: str, now: datetime) -> datetime:
        if self._episodes is not None:
            try:
                return self._episodes.first_seen(target, now)
            except PgkeepError as exc:
                logger.warning("alert episodes not readable: %s", exc.message)
        return self._seen.setdefault(target, now)

    def _open_stale(self, target: str, now: datetime) -> bool:
        if self._episodes is not None:
            try:
                opened = self._episodes.open("backup.stale", target, now)
                self._stale_since[target] = now
                return opened
            except PgkeepError as exc:
                logger.warning("alert episodes not writable: %s", exc.message)
        if target in self._stale_since:
            return False
        self._stale_since[target] = now
        return True

    def _close_stale(self, target: str) -> None:
        self._stale_since.pop(target, None)
        if self._episodes is not None:
            try:
                self._episodes.close("backup.stale", target)
            except PgkeepError as exc:
                logger.warning("alert episodes not writable: %s", exc.message)

    def send(self, message: Message) -> None:
        for url in self._urls:
            self._queue.put((url, message))

    def _deliver_forever(self) -> None:
        while True:
            url, message = self._queue.get()
            self._deliver(url, message)

    def _deliver(self, url: str, message: Message) -> None:
        send: Callable[[str, Message], None] = (
            self._webhook if url.startswith(("http://", "https://")) else _apprise
        )
        for attempt in range(1, ATTEMPTS + 1):
            try:
                send(url, message)
                self.delivered += 1
                return
            except Exception as exc:
                logger.warning(
                    "alert %s to %s failed (attempt %d/%d): %s",
                    message.event,
                    _safe(url),
                    attempt,
                    ATTEMPTS,
                    exc,
                )
                time.sleep(self._backoff * 2 ** (attempt - 1))
        self.failed += 1
        logger.error(
            "alert %s to %s given up after %d attempts", message.event, _safe(url), ATTEMPTS
        )

    def _webhook(self, url: str, message: Message) -> None:
        body = json.dumps(message.body()).encode()
        headers = {"Content-Type": "application/json", "X-Pgkeep-Event": message.event}
        if self._secret:
            headers["X-Pgkeep-Signature"] = signature(self._secret, body)
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 (operator's URL)
            if response.status >= 300:
                raise OSError(f"HTTP {response.status}")


def _apprise(url: str, message: Message) -> None:
    sender = apprise.Apprise()
    if not sender.add(url):
        raise ValueError("not a valid Apprise URL")
    if not sender.notify(title=f"pgkeep: {message.event}", body=message.text):
        raise OSError("Apprise could not deliver")


def _safe(url: str) -> str:
    """The URL without credentials or query, for logs."""
    scheme, _, rest = url.partition("://")
    host = rest.split("/", 1)[0].rsplit("@", 1)[-1]
    return f"{scheme}://{host}/…"
