"""Bytes read from each store, counted where the store adapters read them (and where a
local file is handed to the server to send), exported as `pgkeep_store_read_bytes_total`:
the one-reader claim (a verify with restore reads a backup once) is measurable from
outside."""

from __future__ import annotations

import threading


class ReadMeter:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._bytes: dict[str, int] = {}

    def count(self, store: str, size: int) -> None:
        with self._lock:
            self._bytes[store] = self._bytes.get(store, 0) + size

    def totals(self) -> dict[str, int]:
        with self._lock:
            return dict(self._bytes)


READS = ReadMeter()
