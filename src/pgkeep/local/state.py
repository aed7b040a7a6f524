"""pgkeep's state file: an SQLite database in PGKEEP_STATE_DIR, shared by every pgkeep
process on this machine (`pgkeep serve` and the CLI), never kept in a store (a store's
writer is an adversary).

The directory is made 0700 and the file 0600; a directory or file that others may write
is refused. Every change runs in a `BEGIN IMMEDIATE` transaction, so processes take
turns; WAL lets readers go on meanwhile.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pgkeep.errors import ConfigError, Unavailable

FILE = "state.sqlite3"
BUSY_MS = 10_000


def default_directory() -> Path:
    """`$XDG_STATE_HOME/pgkeep`, else `~/.local/state/pgkeep` (systemd: StateDirectory)."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "pgkeep"


class StateFile:
    """One SQLite file, one connection to it (its threads take turns: a few descriptors
    whatever the number of threads); `transaction()` gives it inside BEGIN IMMEDIATE."""

    def __init__(self, directory: Path, setup: str = "") -> None:
        self.directory = directory
        self.path = directory / FILE
        self._setups: list[str] = [setup] if setup else []
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.RLock()
        self._opened = False

    def add_setup(self, sql: str) -> None:
        """Tables a user of the file needs (run once, at first use)."""
        self._setups.append(sql)
        self._opened = False

    @property
    def where(self) -> str:
        return str(self.path)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            conn = self._connection()
            try:
                conn.execute("BEGIN IMMEDIATE")
                yield conn
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise Unavailable(
                    f"cannot use pgkeep's state file {self.where}", str(exc)
                ) from None
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def _connection(self) -> sqlite3.Connection:
        if not self._opened:
            self._open()
        if self._conn is None:
            conn = sqlite3.connect(
                self.path, timeout=BUSY_MS / 1000, isolation_level=None, check_same_thread=False
            )
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {BUSY_MS}")
            self._conn = conn
        return self._conn

    def _open(self) -> None:
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            _private(self.directory)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
            os.close(fd)
            _private(self.path)
            conn = sqlite3.connect(self.path, timeout=BUSY_MS / 1000, isolation_level=None)
            try:
                conn.execute("PRAGMA journal_mode = WAL")
                for sql in self._setups:
                    conn.executescript(sql)
            finally:
                conn.close()
        except OSError as exc:
            raise ConfigError(
                f"PGKEEP_STATE_DIR: cannot use {str(self.directory)!r}: {exc.strerror}"
            ) from None
        except sqlite3.Error as exc:
            raise Unavailable(f"cannot use pgkeep's state file {self.where}", str(exc)) from None
        self._opened = True


def _private(path: Path) -> None:
    """Refuse a path others may write (or, for the file, read), one another user owns, and
    a symlink (one planted could send pgkeep's state, or its writes, anywhere)."""
    st = path.lstat()
    mode = st.st_mode
    if stat.S_ISLNK(mode):
        raise ConfigError(f"PGKEEP_STATE_DIR: {str(path)!r} is a symlink; refused")
    if st.st_uid != os.geteuid():
        raise ConfigError(
            f"PGKEEP_STATE_DIR: {str(path)!r} belongs to uid {st.st_uid}, not to pgkeep's "
            f"user (uid {os.geteuid()}); refused"
        )
    if mode & (stat.S_IWGRP | stat.S_IWOTH) or (stat.S_ISREG(mode) and mode & stat.S_IROTH):
        raise ConfigError(
            f"PGKEEP_STATE_DIR: {str(path)!r} may be written or read by others "
            f"(mode {stat.S_IMODE(mode):o}); make it 0700 (the file 0600)"
        )
