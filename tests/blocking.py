"""Holding a real pg_dump mid-dump: a lock it must wait for, and its OS process to signal."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict


@contextmanager
def table_locked(url: str, table: str = "customer") -> Iterator[None]:
    """pg_dump takes ACCESS SHARE locks on every table; while we hold ACCESS EXCLUSIVE it waits."""
    with psycopg.connect(url) as conn:
        conn.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
        yield
        conn.rollback()


def wait_for_pg_dump_waiting(url: str, timeout: float = 30) -> None:
    dbname = conninfo_to_dict(url)["dbname"]
    deadline = time.monotonic() + timeout
    with psycopg.connect(url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pg_dump'"
                " AND datname = %s AND wait_event_type = 'Lock'",
                (dbname,),
            ).fetchone()
            if row and row[0]:
                return
            time.sleep(0.02)
    raise AssertionError("pg_dump never started waiting for the lock")


def pg_dump_pids(url: str) -> list[int]:
    """OS processes of pg_dump working on this URL's database (one that is still being
    started through postgres/lifeline.py is the same process: it counts)."""
    marker = f"dbname={conninfo_to_dict(url)['dbname']}".encode()
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        # argv[0], or (for the moment before it becomes pg_dump) lifeline.py's tool argument
        if any(a.endswith(b"/pg_dump") for a in argv[:6]) and any(marker in a for a in argv):
            pids.append(int(proc.name))
    return pids
