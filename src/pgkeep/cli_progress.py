"""Progress of a CLI job (create, verify, restore): a rich progress bar on a terminal, plain
lines otherwise, drawn from the job as the runner reports it (`follow`)."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn

from pgkeep.core.control import Progress as JobProgress
from pgkeep.core.jobs import Job
from pgkeep.core.runner import JobRunner

Draw = Callable[[JobProgress, "str | None"], None]

PLAIN_INTERVAL_SECONDS = 1.0


def describe(p: JobProgress) -> str:
    parts = [f"{p.bytes_written / 1048576:.1f} MB"]
    if p.tables_total is not None:
        parts.append(f"{p.tables_done}/{p.tables_total} tables")
    if p.percent is not None:
        parts.append(f"{p.percent:.0f}%")
    if p.eta_seconds is not None:
        parts.append(f"about {p.eta_seconds:.0f} s left")
    return ", ".join(parts)


def follow(jobs: JobRunner, job_id: str, stream: TextIO | None = None) -> Job:
    """Wait for a job, drawing its progress; Ctrl-C cancels it (and waits for its clean-up)."""
    with progress_view(stream) as draw:
        try:
            while True:
                version = jobs.version
                job = jobs.wait(job_id, timeout=1.0, after=version)
                draw(job.progress, job.filename)
                if job.status.finished:
                    return job
        except KeyboardInterrupt:
            jobs.cancel(job_id)
            return jobs.wait(job_id)


@contextmanager
def progress_view(stream: TextIO | None = None) -> Iterator[Draw]:
    """A function drawing a job's progress on `stream` (stderr) while the block runs."""
    stream = stream or sys.stderr
    if stream.isatty():
        with _bar(stream) as draw:
            yield draw
        return
    printer = _Lines(stream)
    yield printer.draw
    final = replace(printer.progress, percent=100.0, eta_seconds=None)
    print(f"progress: {describe(final)}, done", file=stream, flush=True)


class _Lines:
    """Plain progress lines, at most one a second (logs and pipes, not terminals)."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._last = 0.0
        self.progress = JobProgress()

    def draw(self, progress: JobProgress, filename: str | None) -> None:
        self.progress = progress
        now = time.monotonic()
        if now - self._last >= PLAIN_INTERVAL_SECONDS:
            self._last = now
            print(f"progress: {describe(progress)}", file=self._stream, flush=True)


class _Bar:
    def __init__(self, stream: TextIO) -> None:
        self.bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[text]}"),
            console=Console(file=stream),
            transient=True,
        )
        self._task = self.bar.add_task("backup", total=100, text="starting")

    def draw(self, p: JobProgress, filename: str | None) -> None:
        self.bar.update(
            self._task, completed=p.percent or 0, text=describe(p), description=filename or "job"
        )


@contextmanager
def _bar(stream: TextIO) -> Iterator[Draw]:
    """The bar, with log lines printed above it rather than over it: while it is drawn,
    rich routes sys.stderr through its console, and the log handlers write there."""
    view = _Bar(stream)
    with view.bar:
        handlers = [h for h in logging.getLogger().handlers if isinstance(h, logging.StreamHandler)]
        previous = [h.setStream(sys.stderr) for h in handlers]
        try:
            yield view.draw
        finally:
            for handler, old in zip(handlers, previous, strict=True):
                if old is not None:
                    handler.setStream(old)
