"""The first moment of every PostgreSQL client child: tie its life to pgkeep's, then run the tool.

`process.spawn` runs `python -I -S lifeline.py PARENT_PID TOOL ARGS...`. This asks Linux
for SIGKILL when the parent goes (PR_SET_PDEATHSIG), then checks the parent is still
PARENT_PID: a parent that died before the request leaves the child with a new parent
and no signal to come, so it ends itself. Then it becomes the tool (exec: the same
process, pipes and environment), which keeps the signal. A pg_dump that outlived a
SIGKILLed pgkeep held its locks and snapshot, and overlapped the next dump.

A program of its own, not a `preexec_fn`: Python code between fork and exec in a
process with many threads can deadlock on a lock another thread held (Python's
documentation says so), and this runs in a fresh interpreter instead. Standard library
only (`-I -S`: no site-packages, no PYTHON* variables).
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from pathlib import Path

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
EXIT_CANNOT_RUN = 127  # what a shell answers for a command it cannot run
# Python ignores these at start, and an ignored signal stays ignored across exec: put
# back the default a tool expects (pg_dump writing to a closed pipe dies of SIGPIPE).
_IGNORED_BY_PYTHON = (signal.SIGPIPE, signal.SIGXFSZ)


def die_with_parent(parent: int) -> None:
    """SIGKILL when the parent ends; at once if it already has (it was not `parent`)."""
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return  # not Linux: there is no parent-death signal to ask for
    prctl(PR_SET_PDEATHSIG, ctypes.c_ulong(signal.SIGKILL), 0, 0, 0)
    if os.getppid() != parent:
        os.kill(os.getpid(), signal.SIGKILL)


def environment() -> dict[bytes, bytes]:
    """The environment this process was started with, byte for byte.

    Not `os.environ`: Python's start adds LC_CTYPE=C.UTF-8 to it when the locale is C
    (PEP 538), and the tool must see exactly what pgkeep gave it. The kernel keeps the
    original block, which Python's setenv does not change.
    """
    try:
        block = Path("/proc/self/environ").read_bytes()
    except OSError:
        return {os.fsencode(k): os.fsencode(v) for k, v in os.environ.items()}
    pairs = (item.partition(b"=") for item in block.split(b"\0") if b"=" in item)
    return {name: value for name, _, value in pairs}


def main(argv: list[str]) -> None:
    parent, tool = int(argv[0]), argv[1:]
    die_with_parent(parent)
    for number in _IGNORED_BY_PYTHON:
        signal.signal(number, signal.SIG_DFL)
    try:
        os.execve(tool[0], tool, environment())  # noqa: S606 (argv built by pgkeep, no shell)
    except OSError as exc:
        sys.stderr.write(f"cannot run {Path(tool[0]).name}: {exc.strerror}\n")
        sys.stderr.flush()
        os._exit(EXIT_CANNOT_RUN)


if __name__ == "__main__":
    main(sys.argv[1:])
