"""`make mutate`'s hand mutants (tests/hand_mutants.py): each applied to a copy of the source
tree, its tests run against that copy; the results go to mutants/hand.json for
tests/mutation_report.py.

A mutant is killed when its tests fail (or run past three times the clean run); it
survived when they pass. Its original text must occur exactly once in its file: text
that is gone (the code was changed since) makes the mutant STALE, and a stale mutant is
a failure, never skipped; so is one whose tests cannot run (ERROR). Every mutant's tests
are run once unmutated first, so a test that does not exist or fails anyway cannot pass
for a kill.

Each run is a child forked from this process once pytest and the libraries pgkeep uses
are imported (never pgkeep itself): a run costs its tests, not Python's start-up. Each
child imports pgkeep from its own copy of the tree, one copy per child running at once.
"""

from __future__ import annotations

import compileall
import contextlib
import importlib
import importlib.metadata
import json
import os
import py_compile
import shutil
import signal
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).parents[1]
sys.path[0] = str(ROOT)  # not tests/, whose http package would hide the standard library's

from tests.hand_mutants import MUTANTS, Mutant  # noqa: E402 (the checkout's tests package)

RESULTS = ROOT / "mutants" / "hand.json"
PYTEST = ["-x", "-q", "-p", "no:cacheprovider", "-p", "no:unraisableexception", "-p", "no:randomly"]
# pytest's plugins (anyio, schemathesis…) are imported before the fork: their asserts are
# left as written, and loading them (a second and more each) is not paid by every run.
PYTEST += ["-W", "ignore::pytest.PytestAssertRewriteWarning"]
# Imported once, before any fork: what tests/conftest.py pulls in, but not pgkeep.
PRELOAD = (
    "pytest",
    "httpx",
    "fastapi",
    "starlette",
    "pydantic_settings",
    "psycopg",
    "boto3",
    "botocore",
    "jwt",
    "cryptography.hazmat.primitives.ciphers.aead",
    "pyrage",
    "zstandard",
    "apprise",
    "rich",
    "prometheus_client",
    "cronsim",
    "uvicorn",
)
KILLED, SURVIVED, STALE, ERROR = "killed", "survived", "STALE", "ERROR"


@dataclass
class _Running:
    mutant: Mutant | None  # None: the clean run
    tree: Path
    source: str
    started: float
    timeout: float


def _copy(into: Path) -> Path:
    """A copy of the source tree, compiled with bytecode checked against each source's hash
    (not its time): a mutated file, and the same file restored within the second, is never
    run from a stale .pyc."""
    tree = into / "tree"
    shutil.copytree(ROOT / "src", tree / "src", ignore=shutil.ignore_patterns("__pycache__"))
    checked = py_compile.PycInvalidationMode.CHECKED_HASH
    compileall.compile_dir(tree / "src", quiet=1, invalidation_mode=checked)
    return tree


def _child(tree: Path, tests: tuple[str, ...], show: bool) -> None:
    """In the forked child: pytest on `tests`, pgkeep imported from `tree`; never returns."""
    code = 3
    try:
        import pytest

        sys.path[:0] = [str(tree / "src"), str(ROOT)]
        os.chdir(ROOT)
        if not show:
            quiet = os.open(os.devnull, os.O_WRONLY)
            os.dup2(quiet, 1)
            os.dup2(quiet, 2)
        code = int(pytest.main([*PYTEST, *tests]))
    except BaseException:
        traceback.print_exc()
    finally:
        os._exit(code)


def _start(
    tree: Path, mutant: Mutant | None, timeout: float, show: bool = False
) -> tuple[int, _Running] | str:
    """Fork a run of `mutant` (None: of every mutant's tests, unmutated); STALE instead when
    its original text is not in its file exactly once."""
    path = tree / "src" / "pgkeep" / (mutant.file if mutant else "__init__.py")
    source = path.read_text()
    if mutant is not None:
        if source.count(mutant.original) != 1:
            return STALE
        path.write_text(source.replace(mutant.original, mutant.replacement))
        tests = mutant.tests
    else:
        tests = tuple(dict.fromkeys(t for m in MUTANTS for t in m.tests))
    pid = os.fork()
    if pid == 0:
        _child(tree, tests, show)
    return pid, _Running(mutant, tree, source, time.monotonic(), timeout)


def _status(code: int | None) -> str:
    if code is None or code == 1:
        return KILLED
    return SURVIVED if code == 0 else ERROR


def _reap(running: dict[int, _Running]) -> list[tuple[int, int | None]]:
    """Children that ended (their exit code), or ran past their deadline (None, killed)."""
    ended: list[tuple[int, int | None]] = []
    while not ended:
        for pid, run in running.items():
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                ended.append((pid, os.waitstatus_to_exitcode(status)))
            elif time.monotonic() > run.started + run.timeout:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                ended.append((pid, None))
        if not ended:
            time.sleep(0.02)
    return ended


def _run(trees: list[Path], timeout: float, show: bool) -> list[tuple[str, float]]:
    """Every mutant, as many at once as there are trees: its status and how long its run
    took, in MUTANTS' order."""
    statuses: dict[int, tuple[str, float]] = {}
    waiting = list(enumerate(MUTANTS))
    running: dict[int, _Running] = {}
    indexes: dict[int, int] = {}
    free = list(trees)
    while waiting or running:
        while waiting and free:
            index, mutant = waiting.pop(0)
            tree = free.pop()
            started = _start(tree, mutant, timeout, show)
            if isinstance(started, str):
                statuses[index] = (started, 0.0)
                free.append(tree)
                continue
            pid, run = started
            running[pid], indexes[pid] = run, index
        if running:
            for pid, code in _reap(running):
                run = running.pop(pid)
                assert run.mutant is not None
                (run.tree / "src" / "pgkeep" / run.mutant.file).write_text(run.source)
                took = time.monotonic() - run.started
                statuses[indexes.pop(pid)] = (_status(code), took)
                free.append(run.tree)
    return [statuses[i] for i in range(len(MUTANTS))]


def _clean(tree: Path) -> float:
    """Every mutant's tests, unmutated, in one run: they must pass; how long they take."""
    started = _start(tree, None, 600)
    assert not isinstance(started, str)
    pid, run = started
    [(_, code)] = _reap({pid: run})
    if code != 0:
        raise SystemExit(f"the hand mutants' tests do not pass unmutated (exit {code})")
    return time.monotonic() - run.started


def main(show: bool = False) -> int:
    """`show`: each run's pytest output (why each mutant was killed)."""
    for name in PRELOAD:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    for plugin in importlib.metadata.entry_points(group="pytest11"):
        with contextlib.suppress(ImportError):
            plugin.load()
    jobs = max(1, min(len(MUTANTS), os.cpu_count() or 1))
    with tempfile.TemporaryDirectory(prefix="pgkeep-hand-") as scratch:
        trees = [_copy(Path(scratch) / str(n)) for n in range(jobs)]
        timeout = 3 * _clean(trees[0]) + 10
        statuses = _run(trees, timeout, show)
    results = []
    for mutant, (status, took) in zip(MUTANTS, statuses, strict=True):
        print(f"{status:8} {took:5.1f} s  {mutant.file}: {mutant.why}")
        results.append({"file": mutant.file, "why": mutant.why, "status": status})
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=1) + "\n")
    return 0 if all(s == KILLED for s, _ in statuses) else 1


if __name__ == "__main__":
    sys.exit(main(show="--show" in sys.argv[1:]))
