"""The processes that own jobs on pgkeep's state file: how each names itself (host, pid, a
nonce, its PID namespace), and whether one named so is gone (on this machine, in this
PID namespace: elsewhere, only its lease can say)."""

from __future__ import annotations

import os
import socket
from pathlib import Path


def instance_name() -> str:
    """This process, as others name it: host, pid, a nonce and its PID namespace (a pid
    means this process only within it)."""
    return f"{socket.gethostname()}:{os.getpid()}:{os.urandom(2).hex()}:{pid_namespace()}"


def pid_namespace() -> str:
    try:
        return str(Path("/proc/self/ns/pid").stat().st_ino)
    except OSError:
        return ""


def who(owner: str) -> str:
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    return f"process {pid} on {host}" if pid else owner


def gone(owner: str) -> bool:
    """Whether `owner` was a process on this machine, in this PID namespace, that no longer
    runs (elsewhere, only its lease can say)."""
    host, pid, _, namespace = ([*owner.split(":"), "", "", ""])[:4]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    if namespace and namespace != pid_namespace():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
