"""The built wheel, installed once per session into a fresh virtualenv at `<root>/opt/pgkeep`:
where docs/install.md puts it, inside a directory the systemd unit is verified against.

pip runs with this machine's own configuration (its index and any proxy come from pip's
configuration files and PIP_* variables), as an operator's pip would.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
PIP = [sys.executable, "-m", "pip"]
INSTALL_TIMEOUT = 600  # pip may fetch every runtime dependency when its cache is cold


@dataclass(frozen=True)
class Installed:
    """The wheel and the virtualenv it was installed into."""

    wheel: Path
    root: Path  # a file system root holding the virtualenv at opt/pgkeep

    @property
    def venv(self) -> Path:
        return self.root / "opt" / "pgkeep"

    @property
    def pgkeep(self) -> Path:
        return self.venv / "bin" / "pgkeep"


def outside_env(**extra: str) -> dict[str, str]:
    """This process's environment without what would make a child import the source tree
    (PYTHONPATH, a virtualenv) or configure pgkeep behind a test's back (PGKEEP_*)."""
    keep = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PYTHON", "PGKEEP_", "VIRTUAL_ENV"))
    }
    return keep | extra


def run(
    argv: list[str | Path], env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run to the end; its output, or an assertion naming how it failed."""
    result = subprocess.run(
        [str(a) for a in argv],
        capture_output=True,
        text=True,
        check=False,
        timeout=INSTALL_TIMEOUT,
        env=outside_env() if env is None else env,
    )
    assert result.returncode == 0, f"{argv} exited {result.returncode}:\n{result.stderr[-3000:]}"
    return result


def build_wheel(out: Path) -> Path:
    """What `make wheel` runs, on a clean copy of the sources (no build/ left from before)."""
    source = out / "source"
    source.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(
        ROOT / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
    )
    run([*PIP, "wheel", "--quiet", "--no-deps", "-w", out / "dist", source])
    (wheel,) = (out / "dist").glob("pgkeep-*.whl")
    return wheel


@pytest.fixture(scope="session")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    base = tmp_path_factory.mktemp("install")
    wheel = build_wheel(base)
    found = Installed(wheel, base / "root")
    # The venv gets no pip of its own (ensurepip takes seconds); this pip installs into it.
    run([sys.executable, "-m", "venv", "--without-pip", found.venv])
    run([*PIP, "--python", found.venv / "bin" / "python", "install", "--quiet", wheel])
    return found
