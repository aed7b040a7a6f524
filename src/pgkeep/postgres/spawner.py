"""The one thread that starts every PostgreSQL client child (process.py `spawn`).

Linux sends the parent-death signal (lifeline.py) when the *thread* that forked a child
ends, not its process; pgkeep's own threads come and go while their dumps run, so none
of them may be the one that forks.
"""

from __future__ import annotations

import os
import queue
import subprocess
import threading
from collections.abc import Callable
from concurrent.futures import Future


class Spawner:
    """The one thread that starts every child, for as long as the process lives.

    Linux sends the parent-death signal when the *thread* that forked a child ends, not
    its process; pgkeep's own threads (a request's, a job's, a worker's) come and go
    while their dumps run, so none of them may be the one that forks.
    """

    def __init__(self) -> None:
        self._requests: queue.SimpleQueue[
            tuple[Callable[[], subprocess.Popen[bytes]], Future[subprocess.Popen[bytes]]]
        ] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._pid = 0  # the process whose thread it is: a forked copy starts its own

    def start(self, popen: Callable[[], subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
        with self._lock:
            if self._pid != os.getpid():
                threading.Thread(target=self._serve, name="spawner", daemon=True).start()
                self._pid = os.getpid()
        started: Future[subprocess.Popen[bytes]] = Future()
        self._requests.put((popen, started))
        try:
            return started.result()
        except BaseException:  # interrupted while waiting: a child started anyway is ended
            started.add_done_callback(_kill_started)
            raise

    def _serve(self) -> None:
        while True:
            popen, started = self._requests.get()
            try:
                started.set_result(popen())
            except BaseException as exc:
                started.set_exception(exc)


def _kill_started(started: Future[subprocess.Popen[bytes]]) -> None:
    if started.exception() is None:
        started.result().kill()
