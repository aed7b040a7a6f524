"""ReadAhead and widen_pipe against real child processes writing to real pipes."""

from __future__ import annotations

import fcntl
import hashlib
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from pgkeep.postgres.process import PIPE_BYTES, ReadAhead, widen_pipe

# A child that writes `n` pseudo-random MiB to stdout, then exits.
WRITER = (
    "import random, sys; r = random.Random(7)\n"
    "for _ in range(int(sys.argv[1])): sys.stdout.buffer.write(r.randbytes(1 << 20))\n"
)
MIB = 1 << 20


def child(mib: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", WRITER, str(mib)], stdout=subprocess.PIPE)


def expected_sha256(mib: int) -> str:
    out = subprocess.run(
        [sys.executable, "-c", WRITER, str(mib)], stdout=subprocess.PIPE, check=True
    ).stdout
    return hashlib.sha256(out).hexdigest()


def test_widen_pipe_raises_the_pipe_to_a_mebibyte() -> None:
    proc = child(0)
    assert proc.stdout is not None
    before = fcntl.fcntl(proc.stdout.fileno(), fcntl.F_GETPIPE_SZ)
    widen_pipe(proc.stdout)
    after = fcntl.fcntl(proc.stdout.fileno(), fcntl.F_GETPIPE_SZ)
    proc.wait()
    proc.stdout.close()
    assert before < PIPE_BYTES == after


def test_every_byte_arrives_in_order() -> None:
    proc = child(24)
    assert proc.stdout is not None
    reader = ReadAhead(proc.stdout.fileno(), MIB, depth=2)
    digest = hashlib.sha256()
    total = 0
    for chunk in reader:
        time.sleep(0.001)  # a consumer slower than the reader: the queue fills
        digest.update(chunk)
        total += len(chunk)
    reader.close()
    assert proc.wait() == 0
    proc.stdout.close()
    assert total == 24 * MIB
    assert digest.hexdigest() == expected_sha256(24)


def test_a_consumer_that_stops_early_leaves_no_thread_behind() -> None:
    """The reader is blocked on a full queue; ending the child and closing must not hang."""
    proc = child(64)
    assert proc.stdout is not None
    reader = ReadAhead(proc.stdout.fileno(), MIB, depth=2)
    first = next(iter(reader))
    assert 0 < len(first) <= MIB
    time.sleep(0.2)  # queue full, pipe full, child blocked writing
    proc.kill()
    proc.wait()
    closer = threading.Thread(target=reader.close, daemon=True)
    closer.start()
    closer.join(timeout=5)
    proc.stdout.close()
    assert not closer.is_alive(), "ReadAhead.close() hung"


def test_a_read_error_reaches_the_consumer(tmp_path: Path) -> None:
    fd = os.open(tmp_path, os.O_RDONLY)  # reading a directory: EISDIR
    try:
        reader = ReadAhead(fd, MIB)
        with pytest.raises(IsADirectoryError):
            list(reader)
        reader.close()
    finally:
        os.close(fd)
