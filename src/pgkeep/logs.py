"""Logging set-up for entry points: text or JSON lines, each carrying the request id if any.

Every message has its control characters escaped, so a value that came from a
request (a path with an encoded newline) can never start a forged log line.
Warnings and errors repeated faster than RATE_LINES a RATE_WINDOW (per message
template) are counted instead of written, so a flood cannot fill the disk.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import threading
import time
from datetime import UTC, datetime

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
RATE_WINDOW = 10.0
RATE_LINES = 20
_LIMITED_LOGGERS = ("uvicorn", "asyncio")


"".encode("unicode_escape")  # load the codec now: not first when descriptors are scarce


def escape(text: str) -> str:
    """Control characters as visible escapes: a newline becomes the two characters \\n."""
    return _CONTROL.sub(lambda m: m[0].encode("unicode_escape").decode("ascii"), text)


class _RequestId(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        return True


class _Escape(logging.Filter):
    """Formats the message once, escaped; tracebacks (exc_info) keep their own lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = escape(record.getMessage())
        record.args = None
        return True


class RateLimit(logging.Filter):
    """At most RATE_LINES lines per template per window for warnings, errors and the
    server's own loggers; then one line saying how many were suppressed."""

    def __init__(self, window: float = RATE_WINDOW, lines: int = RATE_LINES) -> None:
        super().__init__()
        self._window = window
        self._lines = lines
        self._seen: dict[tuple[str, object], list[float]] = {}
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING and not record.name.startswith(_LIMITED_LOGGERS):
            return True
        key = (record.name, record.msg)
        now = time.monotonic()
        with self._lock:
            start, count, suppressed = self._seen.get(key, [now, 0.0, 0.0])
            if now - start >= self._window:
                start, count = now, 0
                if suppressed:
                    record.msg = f"{record.msg} ({int(suppressed)} similar lines suppressed)"
                suppressed = 0
            count += 1
            allowed = count <= self._lines
            self._seen[key] = [start, count, suppressed + (not allowed)]
            if len(self._seen) > 10_000:
                self._seen.clear()
        return allowed


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = getattr(record, "request_id", "")
        if rid:
            entry["request_id"] = rid
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure(level: str, fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RateLimit())
    handler.addFilter(_RequestId())
    handler.addFilter(_Escape())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
