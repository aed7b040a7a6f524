"""Custom archives staged for pg_restore: in a file with no name, read end to end, and (an
imported one) the schema it would run in pgkeep's own session checked first.

A staged archive is decrypted plaintext: it is written to an O_TMPFILE in PGKEEP_TMP_DIR
and handed to pg_restore as /dev/fd/N, so nothing of it is left there whatever happens
to the process; pg_restore reads it only after the chunks that filled it ended, which is
where the one reader checks them against the signed manifest.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from pgkeep.core import planning
from pgkeep.errors import Corrupt, InsufficientStorage, StorageError
from pgkeep.postgres import tools
from pgkeep.postgres.process import child_env, run, run_output

logger = logging.getLogger(__name__)
STAGING_MARGIN = 64 * 1024 * 1024  # left free beside a staged archive


class PgArchives:
    def __init__(self, bin_dirs: list[Path], tmp_dir: Path | None) -> None:
        self._bin_dirs = bin_dirs
        self._tmp_dir = tmp_dir

    def _tool(self, name: str, server_major: int, archive_major: int) -> tools.Tool:
        return tools.choose_reader(
            tools.find_tools(name, self._bin_dirs), server_major, archive_major, name
        )

    def check(self, archive_major: int, chunks: Iterable[bytes], size_hint: int = 0) -> str:
        """Read a custom archive end to end with pg_restore (its TOC, then every data block)."""
        pg_restore = self._tool("pg_restore", archive_major, archive_major)
        env = child_env()
        with self.staged(chunks, size_hint) as (path, fd):
            code, tail = run([str(pg_restore.path), "--list", path], env, (fd,))
            if code != 0:
                raise Corrupt("pg_restore cannot read the archive's table of contents", tail)
            code, tail = run([str(pg_restore.path), "--file=/dev/null", path], env, (fd,))
            if code != 0:
                raise Corrupt("pg_restore cannot read the archive's data", tail)
        return f"read end to end by pg_restore {pg_restore.version}"

    def check_import(self, chunks: Iterable[bytes], size_hint: int) -> None:
        """An imported custom archive's schema, printed by pg_restore section by section and
        checked as an imported plain dump is (planning.Planner, strict: only what pg_dump
        writes; pgkeep's own session only grants, comments, extensions and owners); Corrupt
        naming the first statement refused."""
        pg_restore = self._tool("pg_restore", 0, 0)
        with self.staged(chunks, size_hint) as (path, fd):
            code, _, tail = run_output([str(pg_restore.path), "--list", path], child_env(), (fd,))
            if code != 0:
                raise Corrupt("pg_restore cannot read the archive's table of contents", tail)
            for section in ("pre-data", "post-data"):
                argv = [str(pg_restore.path), f"--section={section}", "--file=-", path]
                code, out, tail = run_output(argv, child_env(), (fd,))
                if code != 0:
                    raise Corrupt("pg_restore cannot read the archive's schema", tail)
                planner = planning.Planner(strict=True)  # each print has its own \\restrict
                planner.feed(out)
                planner.finish()

    def sweep(self) -> list[str]:
        """Archives an earlier version staged with a name (`pgkeep-archive-*`) and a crash left
        in the staging directory: decrypted plaintext, removed. Staged files have no name now."""
        where = self._tmp_dir or Path(tempfile.gettempdir())
        removed = []
        for path in where.glob("pgkeep-archive-*"):
            try:
                path.unlink()
            except OSError as exc:
                logger.error("could not remove %s: %s", path, exc.strerror)
                continue
            removed.append(str(path))
        return removed

    @contextmanager
    def staged(self, chunks: Iterable[bytes], size_hint: int) -> Iterator[tuple[str, int]]:
        """The archive's bytes in a private file with no name, (its /dev/fd path, descriptor):
        refused first when the staging directory has no room for `size_hint` bytes. The
        chunks raise at their end when they are not the bytes that were checked, so nothing
        reads a staged file that failed its check."""
        where = self._tmp_dir or Path(tempfile.gettempdir())
        try:
            free = shutil.disk_usage(where).free
        except OSError as exc:
            raise StorageError(f"cannot stage archive in {str(where)!r}: {exc.strerror}") from exc
        if size_hint and free < size_hint + STAGING_MARGIN:
            raise InsufficientStorage(
                f"not enough space in {str(where)!r} (PGKEEP_TMP_DIR) to stage the archive: "
                f"{free} bytes free, {size_hint} needed",
                "free space there, or point PGKEEP_TMP_DIR at a larger disk",
            )
        try:
            fd = os.open(where, os.O_TMPFILE | os.O_RDWR, 0o600)
        except OSError as exc:
            raise StorageError(f"cannot stage archive in {str(where)!r}: {exc.strerror}") from exc
        try:
            with os.fdopen(os.dup(fd), "wb") as handle:
                for chunk in chunks:
                    handle.write(chunk)
            yield f"/dev/fd/{fd}", fd
        except OSError as exc:
            raise StorageError(f"cannot stage archive: {exc.strerror}") from exc
        finally:
            os.close(fd)
