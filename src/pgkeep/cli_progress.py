"""Progress of a CLI backup: a rich progress bar on a terminal, plain lines otherwise."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn

from pgkeep.core.control import Control
from pgkeep.core.control import Progress as JobProgress

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


@contextmanager
def progress_control(stream: TextIO | None = None) -> Iterator[Control]:
    """A Control whose progress is drawn on `stream` (stderr) while the block runs."""
    stream = stream or sys.stderr
    if stream.isatty():
        with _bar(stream) as control:
            yield control
        return
    printer = _Lines(stream)
    yield printer.control
    final = replace(printer.control.progress, percent=100.0, eta_seconds=None)
    print(f"progress: {describe(final)}, done", file=stream, flush=True)


class _Lines:
    """Plain progress lines, at most one a second (logs and pipes, not terminals)."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._last = 0.0
        self.control = Control(self._draw)

    def _draw(self) -> None:
        now = time.monotonic()
        if now - self._last >= PLAIN_INTERVAL_SECONDS:
            self._last = now
            print(f"progress: {describe(self.control.progress)}", file=self._stream, flush=True)


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
        self.control = Control(self._draw)

    def _draw(self) -> None:
        p = self.control.progress
        self.bar.update(
            self._task,
            completed=p.percent or 0,
            text=describe(p),
            description=self.control.filename or "backup",
        )


@contextmanager
def _bar(stream: TextIO) -> Iterator[Control]:
    """The bar, with log lines printed above it rather than over it: while it is drawn,
    rich routes sys.stderr through its console, and the log handlers write there."""
    view = _Bar(stream)
    with view.bar:
        handlers = [h for h in logging.getLogger().handlers if isinstance(h, logging.StreamHandler)]
        previous = [h.setStream(sys.stderr) for h in handlers]
        try:
            yield view.control
        finally:
            for handler, old in zip(handlers, previous, strict=True):
                if old is not None:
                    handler.setStream(old)
