"""deploy/systemd/pgkeep.service: `systemd-analyze verify` finds nothing to say about it in
a root that holds the installed wheel at /opt/pgkeep, its sandbox keeps a low exposure,
and it keeps secrets out, backups apart from state, and stops gently enough for dumps."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from pgkeep.config import Settings
from tests.deploy.conftest import ROOT, Installed

UNIT = ROOT / "deploy" / "systemd" / "pgkeep.service"
IN_ROOT = "/etc/systemd/system/pgkeep.service"
MAX_EXPOSURE = 2.0  # docs/install.md states the exposure
ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(
    ANALYZE is None, reason="no systemd-analyze: `make test` installs Debian's systemd as root"
)


def _unit_root(installed: Installed, text: str) -> Path:
    """The installed root with the unit at /etc/systemd/system and, standing in for the
    system's own, this machine's unit files (the targets the unit's dependencies name)."""
    units = installed.root / "usr" / "lib" / "systemd" / "system"
    if not units.exists():
        shutil.copytree("/usr/lib/systemd/system", units, symlinks=True)
    unit = installed.root / IN_ROOT.lstrip("/")
    unit.parent.mkdir(parents=True, exist_ok=True)
    unit.write_text(text)
    return installed.root


def _analyze(*args: str) -> subprocess.CompletedProcess[str]:
    assert ANALYZE is not None
    return subprocess.run([ANALYZE, *args], capture_output=True, text=True, check=False, timeout=60)


def _verify(installed: Installed, text: str) -> tuple[int, str]:
    root = _unit_root(installed, text)
    result = _analyze("verify", f"--root={root}", IN_ROOT)
    return result.returncode, (result.stdout + result.stderr).strip()


@needs_analyze
def test_unit_verifies_without_a_word(installed: Installed) -> None:
    assert _verify(installed, UNIT.read_text()) == (0, "")


@needs_analyze
def test_unit_verify_would_report_a_misspelt_key(installed: Installed) -> None:
    """Unknown keys are only warnings (exit 0): any output at all is what fails the unit."""
    code, said = _verify(installed, UNIT.read_text().replace("ProtectHome=", "ProtectHomes="))
    assert code == 0
    assert "Unknown key 'ProtectHomes'" in said


@needs_analyze
def test_unit_verify_would_report_a_missing_executable(installed: Installed) -> None:
    text = UNIT.read_text().replace("/opt/pgkeep/bin/pgkeep", "/opt/pgkeep/bin/pgkeeper")
    code, said = _verify(installed, text)
    assert code != 0
    assert "/opt/pgkeep/bin/pgkeeper" in said


@needs_analyze
def test_unit_sandbox_exposure_is_low(installed: Installed) -> None:
    root = _unit_root(installed, UNIT.read_text())
    result = _analyze("security", "--offline=yes", f"--root={root}", IN_ROOT)
    found = re.search(r"Overall exposure level for pgkeep\.service: ([\d.]+)", result.stdout)
    assert found, result.stdout + result.stderr
    assert float(found[1]) <= MAX_EXPOSURE


def _service() -> dict[str, list[str]]:
    """The [Service] section's keys, each with its values in order."""
    section = UNIT.read_text().split("[Service]", 1)[1].split("\n[", 1)[0]
    keys: dict[str, list[str]] = {}
    for line in section.splitlines():
        if line and not line.startswith("#"):
            key, value = line.split("=", 1)
            keys.setdefault(key, []).append(value)
    return keys


def _environment() -> dict[str, str]:
    pairs = (p.split("=", 1) for line in _service()["Environment"] for p in line.split())
    return dict(pairs)


def test_unit_runs_the_installed_pgkeep_as_its_own_user() -> None:
    service = _service()
    assert service["ExecStart"] == ["/opt/pgkeep/bin/pgkeep serve"]
    assert service["User"] == ["pgkeep"]
    assert service["CapabilityBoundingSet"] == [""]
    assert service["ProtectSystem"] == ["strict"]


def test_unit_sets_only_settings_pgkeep_reads() -> None:
    settings = {f"PGKEEP_{name.upper()}" for name in Settings.model_fields}
    assert {name for name in _environment() if name.startswith("PGKEEP_")} <= settings


def test_unit_keeps_secrets_in_its_environment_file() -> None:
    assert _service()["EnvironmentFile"] == ["/etc/pgkeep/pgkeep.env"]
    secret = re.compile(r"SECRET|KEY|PASSWORD|TOKEN|DATABASE_URL|^AWS_")
    named = [name for name in _environment() if secret.search(name)]
    assert not named, f"secrets belong in the EnvironmentFile, not the unit: {named}"
    assert not re.search(r"://[^/\s]*:[^/\s]*@", UNIT.read_text())


def test_unit_keeps_backups_apart_from_state() -> None:
    env, service = _environment(), _service()
    assert service["StateDirectory"] == ["pgkeep"]
    assert env["PGKEEP_STATE_DIR"] == "%S/pgkeep"
    assert service["ReadWritePaths"] == [env["PGKEEP_BACKUP_DIR"]]
    assert not env["PGKEEP_BACKUP_DIR"].startswith("/var/lib/pgkeep")


def test_unit_lets_running_dumps_finish_before_it_kills() -> None:
    service = _service()
    grace = float(_environment()["PGKEEP_SHUTDOWN_GRACE_SECONDS"])
    assert float(service["TimeoutStopSec"][0]) >= grace + 10
    assert service["KillMode"] == ["mixed"]  # SIGTERM to pgkeep, not to its pg_dump
    assert service["Restart"] == ["on-failure"]
