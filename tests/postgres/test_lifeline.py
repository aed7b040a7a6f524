"""Children die with pgkeep: spawned through lifeline.py, by a thread that outlives them,
checked in /proc after a real SIGKILL of a real parent process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from pgkeep.errors import ToolError
from pgkeep.postgres import process
from pgkeep.postgres.connection import Connection
from pgkeep.throwaway.cluster import ThrowawayCluster

LIFELINE = Path(process.__file__).with_name("lifeline.py")
SLEEPER = [sys.executable, "-c", "import time; time.sleep(120)"]
# A pgkeep stand-in: spawns a child from a thread that ends once the child runs the tool
# (as a request's or a worker's thread does), prints the child's pid, waits to be killed.
SPAWNING_PARENT = """
import subprocess, sys, threading, time
from pgkeep.postgres.process import child_env, spawn

def start(box):
    quiet = subprocess.DEVNULL
    box.append(spawn(sys.argv[1:], child_env(), stdin=quiet, stdout=quiet))
    tool = "\\0".join(sys.argv[1:]).encode() + b"\\0"
    while open(f"/proc/{box[0].pid}/cmdline", "rb").read() != tool:
        time.sleep(0.01)  # until lifeline.py has asked for the signal and become the tool

box = []
thread = threading.Thread(target=start, args=(box,))
thread.start()
thread.join()
print(box[0].pid, flush=True)
time.sleep(120)
"""
# pgkeep dumping a target: the real PgDumper, from the main thread.
DUMPING_PARENT = """
import sys
from pathlib import Path
from pgkeep.postgres.dump import PgDumper
from pgkeep.postgres.connection import Connection
with PgDumper(Connection.from_url(sys.argv[1]), [Path(sys.argv[2])]).dump() as stream:
    for _ in stream.chunks:
        pass
"""


def alive(pid: int) -> bool:
    """Running, not a zombie nobody reaped (this machine's init may not reap)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def children(parent: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            status = (entry / "status").read_text() if entry.name.isdigit() else ""
        except OSError:
            continue
        if f"\nPPid:\t{parent}\n" in status:
            found.append(int(entry.name))
    return found


def backend_exists(conn: psycopg.Connection[tuple[object, ...]], pid: object) -> bool:
    return bool(conn.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [pid]).fetchall())


def wait_for(condition: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


@pytest.fixture
def reaped() -> Iterator[list[int]]:
    """Pids to SIGKILL after the test, whatever it found: nothing is left running."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


def test_a_child_outlives_the_thread_that_spawned_it_but_not_pgkeep(reaped: list[int]) -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", SPAWNING_PARENT, *SLEEPER], stdout=subprocess.PIPE, text=True
    )
    reaped.append(parent.pid)
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    reaped.append(child)
    time.sleep(0.5)  # the spawning thread has ended; the parent-death signal must not fire
    assert alive(child), "the child died with the thread that asked for it"
    parent.kill()
    parent.wait()
    parent.stdout.close()
    assert wait_for(lambda: not alive(child), 3), "the child outlived a SIGKILLed pgkeep"


def test_a_child_whose_parent_is_already_gone_ends_itself() -> None:
    """The parent died between fork and the request: the recheck of getppid() catches it."""
    not_the_parent = os.getppid()
    result = subprocess.run(
        [sys.executable, "-I", "-S", str(LIFELINE), str(not_the_parent), *SLEEPER],
        timeout=10,
        check=False,
    )
    assert result.returncode == -signal.SIGKILL


def test_a_tool_gets_exactly_its_environment_and_default_signals() -> None:
    """Python's start ignores SIGPIPE and, under the C locale, adds LC_CTYPE; neither
    reaches the tool."""
    env = {"PATH": "/usr/bin:/bin", "LANG": "C", "PGPASSWORD": "pw"}
    proc = process.spawn(["/usr/bin/env"], env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
    out, _ = proc.communicate(timeout=10)
    assert dict(line.split("=", 1) for line in out.decode().splitlines()) == env
    proc = process.spawn(
        ["/bin/cat", "/proc/self/status"], env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE
    )
    out, _ = proc.communicate(timeout=10)
    ignored = next(line for line in out.decode().splitlines() if line.startswith("SigIgn:"))
    assert int(ignored.split()[1], 16) & (1 << (signal.SIGPIPE - 1)) == 0


def test_spawn_names_a_tool_it_cannot_run(tmp_path: Path) -> None:
    with pytest.raises(ToolError, match="cannot run pg_nothing: No such file or directory"):
        process.spawn([str(tmp_path / "pg_nothing")], {}, stdin=None, stdout=None)
    plain = tmp_path / "pg_plain"
    plain.write_text("not a program")
    with pytest.raises(ToolError, match="cannot run pg_plain: Permission denied"):
        process.spawn([str(plain)], {}, stdin=None, stdout=None)


def test_sessions_check_for_a_gone_client_where_the_server_knows_how() -> None:
    assert process.session_options(13) == ""
    assert process.session_options(14) == "-c client_connection_check_interval=2s"
    target = Connection.from_url("postgresql://u:secret@h/db")
    assert target.child_env(18)["PGOPTIONS"] == "-c client_connection_check_interval=2s"
    assert "PGOPTIONS" not in target.child_env(13)
    assert "PGOPTIONS" not in target.child_env()


def test_an_orphaned_pg_dump_and_its_backend_end_with_pgkeep(
    database: str, cluster: ThrowawayCluster, reaped: list[int]
) -> None:
    """pg_dump waits for a lock someone holds; pgkeep is SIGKILLed. pg_dump ends, and its
    backend stops waiting (and so holding its place, locks and snapshot) within seconds."""
    dbname = Connection.from_url(database).dbname
    waiting = (
        "SELECT pid FROM pg_stat_activity WHERE datname = %s "
        "AND application_name = 'pg_dump' AND wait_event_type = 'Lock'"
    )
    with psycopg.connect(database) as holder, psycopg.connect(database, autocommit=True) as watch:
        holder.execute("LOCK TABLE customer IN ACCESS EXCLUSIVE MODE")
        parent = subprocess.Popen(
            [sys.executable, "-c", DUMPING_PARENT, database, str(cluster.bin_dir)]
        )
        reaped.append(parent.pid)
        assert wait_for(lambda: bool(watch.execute(waiting, [dbname]).fetchall()), 30)
        (dump,) = children(parent.pid)
        reaped.append(dump)
        backend = watch.execute(waiting, [dbname]).fetchone()
        assert backend is not None
        parent.kill()
        parent.wait()
        assert wait_for(lambda: not alive(dump), 3), "pg_dump outlived a SIGKILLed pgkeep"
        ended = wait_for(lambda: not backend_exists(watch, backend[0]), 8)
        holder.rollback()
    assert ended, "pg_dump's backend still waits for a client that is gone"
