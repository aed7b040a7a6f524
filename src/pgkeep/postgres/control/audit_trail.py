"""The audit trail of instances that share a control database: one chain, as rows.

Every instance appends to `pgkeep.audit` under one transaction-scoped advisory lock,
reading the newest row's hash and inserting the next entry in the same transaction,
so actions on any instance form one chain (`seq` is the primary key: an entry can
never be numbered twice). Entries are the same keyed JSON objects as the file's
lines (`storage.audit.chained`), so `storage.audit_verify.verify` checks both.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import psycopg

from pgkeep.core.audit import GENESIS, Anchor, chained, event_fields, parsed
from pgkeep.core.events import Event
from pgkeep.core.signing import Signer
from pgkeep.errors import StorageError

_SETUP = """
CREATE SCHEMA IF NOT EXISTS pgkeep;
CREATE TABLE IF NOT EXISTS pgkeep.audit (
    seq bigint PRIMARY KEY,
    entry text NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
);
"""
_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended('pgkeep-audit', 0))"

Connect = Callable[[], AbstractContextManager[psycopg.Connection[Any]]]


class PgAuditTrail:
    """`storage.audit.Trail` in the control database (`connect`: its connection pool)."""

    anchor: Anchor | None = None  # the rows are the record; nothing outside them to compare

    def __init__(self, connect: Connect, signer: Signer, where: str) -> None:
        self.signer = signer
        self._connect = connect
        self._where = where
        self._ready = False

    @property
    def where(self) -> str:
        return f"pgkeep.audit in the control database {self._where}"

    def on_event(self, event: Event) -> None:
        self.append(**event_fields(event))

    def append(self, **fields: Any) -> None:
        self.append_all([fields])

    def append_all(self, entries: list[dict[str, Any]]) -> None:
        """Append entries in order, in one transaction (all or none)."""
        with self._connect() as conn:
            self._setup(conn)
            try:
                with conn.transaction():
                    conn.execute(_LOCK)
                    row = conn.execute(
                        "SELECT seq, entry FROM pgkeep.audit ORDER BY seq DESC LIMIT 1"
                    ).fetchone()
                    seq, prev = (0, GENESIS) if row is None else _head(row)
                    for fields in entries:
                        entry = chained(self.signer, seq, prev, fields)
                        conn.execute(
                            "INSERT INTO pgkeep.audit (seq, entry) VALUES (%s, %s)",
                            (entry["seq"], json.dumps(entry, sort_keys=True, ensure_ascii=True)),
                        )
                        seq, prev = int(entry["seq"]), str(entry["hash"])
            except (ValueError, KeyError, TypeError) as exc:
                raise StorageError(
                    f"cannot append to {self.where}: its newest entry is unreadable"
                ) from exc

    def read(self) -> list[dict[str, Any]]:
        """Every entry, oldest first; an unreadable one as `{"_unreadable": its seq}`."""
        with self._connect() as conn:
            self._setup(conn)
            rows = conn.execute("SELECT seq, entry FROM pgkeep.audit ORDER BY seq").fetchall()
        return [parsed(text, seq) for seq, text in map(_columns, rows)]

    def page(self, offset: int, limit: int) -> tuple[list[dict[str, Any]], int]:
        with self._connect() as conn:
            self._setup(conn)
            total = conn.execute("SELECT count(*) AS total FROM pgkeep.audit").fetchone()
            rows = conn.execute(
                "SELECT seq, entry FROM pgkeep.audit ORDER BY seq DESC OFFSET %s LIMIT %s",
                (offset, limit),
            ).fetchall()
        count = 0 if total is None else int(total["total"] if isinstance(total, dict) else total[0])
        return [parsed(text, seq) for seq, text in map(_columns, rows)], count

    def _setup(self, conn: psycopg.Connection[Any]) -> None:
        if self._ready:
            return
        for _ in range(3):  # two instances creating the table at once: one retries
            try:
                conn.execute(_SETUP)
                break
            except (psycopg.errors.UniqueViolation, psycopg.errors.DuplicateObject):
                continue
        self._ready = True


def _columns(row: Any) -> tuple[int, str]:
    if isinstance(row, dict):
        return int(row["seq"]), str(row["entry"])
    return int(row[0]), str(row[1])


def _head(row: Any) -> tuple[int, str]:
    seq, text = _columns(row)
    return seq, str(json.loads(text)["hash"])
