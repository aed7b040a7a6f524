"""What happened, for whoever listens: metrics count it, alerts tell people; none waits."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Event:
    kind: str  # "backup" or "verify"
    status: str  # "succeeded", "failed", "cancelled"
    target: str
    at: datetime
    filename: str | None = None
    size_bytes: int | None = None
    error: str = ""


Listener = Callable[[Event], None]


def emit(listeners: list[Listener], event: Event) -> None:
    """Tell every listener; a listener that fails is logged and never fails the work."""
    for listener in listeners:
        try:
            listener(event)
        except Exception:
            logger.exception("event listener failed for %s %s", event.kind, event.status)
