"""The audit log: append-only JSON lines, each carrying the hash of the line before.

Editing, removing or reordering a line breaks the chain, and `verify` names the
first broken line. (Cutting lines off the end leaves a valid shorter chain:
ship the log elsewhere, or note its length, to catch that.)
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path
from typing import Any

from pgkeep.errors import StorageError

GENESIS = "0" * 64


def entry_hash(entry: dict[str, Any]) -> str:
    body = {k: v for k, v in entry.items() if k != "hash"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


class AuditLog:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._seq, self._last = 0, GENESIS
        entries = self.read()
        if entries:
            self._seq, self._last = int(entries[-1]["seq"]), str(entries[-1]["hash"])

    def append(self, **fields: Any) -> dict[str, Any]:
        with self._lock:
            entry = {"seq": self._seq + 1, **fields, "prev": self._last}
            entry["hash"] = entry_hash(entry)
            line = json.dumps(entry, sort_keys=True, ensure_ascii=False) + "\n"
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                try:
                    os.write(fd, line.encode())
                    os.fsync(fd)
                finally:
                    os.close(fd)
            except OSError as exc:
                raise StorageError(f"cannot append to the audit log: {exc.strerror}") from exc
            self._seq, self._last = entry["seq"], entry["hash"]
            return entry

    def read(self) -> list[dict[str, Any]]:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise StorageError(f"cannot read the audit log: {exc.strerror}") from exc
        entries = []
        for number, line in enumerate(text.splitlines(), 1):
            try:
                entries.append(json.loads(line))
            except ValueError:
                entries.append({"_unreadable": number})
        return entries


def verify(path: Path) -> tuple[bool, int, str]:
    """(intact, entries, what is wrong) for the chain in `path`."""
    entries = AuditLog(path).read() if path.exists() else []
    previous = GENESIS
    for number, entry in enumerate(entries, 1):
        if "_unreadable" in entry:
            return False, len(entries), f"line {number}: not JSON"
        if entry.get("seq") != number or entry.get("prev") != previous:
            return False, len(entries), f"line {number}: chain broken (a line removed or reordered)"
        if entry.get("hash") != entry_hash(entry):
            return False, len(entries), f"line {number}: content does not match its hash (edited)"
        previous = entry["hash"]
    return True, len(entries), ""
