"""Filling a small filesystem to its last block, the way a full disk looks to pgkeep."""

from __future__ import annotations

import errno
from pathlib import Path


def fill(directory: Path) -> Path:
    """A file taking every block left on `directory`'s filesystem.

    Unbuffered on purpose: a buffered writer keeps the bytes that did not fit and raises
    ENOSPC again when it is closed, so whether filling "worked" would depend on how the
    free space divides into the buffer (seen failing in CI that way)."""
    filler = directory / "filler"
    with filler.open("wb", buffering=0) as out:
        while True:
            try:
                out.write(bytes(4096))
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                return filler
