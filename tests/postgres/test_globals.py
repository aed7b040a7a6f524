"""Globals and role passwords: `globals_passwords`, and roles that may not read pg_authid,
on a real server with real pg_dumpall."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from pgkeep import targets, wiring
from pgkeep.config import load_settings
from pgkeep.throwaway.cluster import ThrowawayCluster
from tests.conftest import ACTOR, SECRET

ROLE = "pgkeep_globals_someone"
VERIFIER = "SCRAM-SHA-256$"  # what a role's password is stored as (PostgreSQL 14+)


@pytest.fixture
def role_with_password(cluster: ThrowawayCluster) -> Iterator[str]:
    password = secrets.token_urlsafe(12)
    cluster.execute(f"DROP ROLE IF EXISTS {ROLE}")
    cluster.execute(f"CREATE ROLE {ROLE} LOGIN PASSWORD '{password}'")
    yield password
    cluster.execute(f"DROP ROLE IF EXISTS {ROLE}")


def _config(tmp_path: Path, url: str, top: str = "", server: str = "") -> Path:
    path = tmp_path / "pgkeep.toml"
    path.write_text(
        f'jwt_secret = "{SECRET}"\nbackup_dir = "{tmp_path / "store"}"\n{top}\n'
        f'[servers.main]\nurl = "{url}"\ninclude = ["no_such_database_*"]\nglobals = true\n'
        f"{server}\n"
    )
    return path


def _globals_backup(path: Path, cluster: ThrowawayCluster) -> tuple[str, tuple[str, ...]]:
    """The text of a new globals backup of `[servers.main]`, and its manifest's flags."""
    runtime = wiring.build(load_settings(config=path, pg_bin_dir=cluster.bin_dir))
    backup = runtime.services["main"].creating.create(None, ACTOR)
    assert backup.manifest is not None
    text = (path.parent / "store" / "main" / backup.name).read_text()
    return text, backup.manifest.flags


@pytest.mark.parametrize(
    ("top", "server", "passwords"),
    [
        ("", "", True),  # the default
        ("", "globals_passwords = false", False),
        ("globals_passwords = false", "", False),
        ("globals_passwords = false", "globals_passwords = true", True),
    ],
)
def test_globals_carry_password_verifiers_unless_turned_off(
    cluster: ThrowawayCluster,
    role_with_password: str,
    tmp_path: Path,
    top: str,
    server: str,
    passwords: bool,
) -> None:
    path = _config(tmp_path, cluster.url(), top, server)
    text, flags = _globals_backup(path, cluster)
    assert f"CREATE ROLE {ROLE};" in text
    assert (VERIFIER in text) is passwords
    assert flags == (() if passwords else ("--no-role-passwords",))
    assert role_with_password not in text


def test_a_role_that_may_not_read_pg_authid_dumps_without_passwords(
    cluster: ThrowawayCluster,
    role_with_password: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = cluster.url().replace(f"postgres:{cluster.password}@", f"{ROLE}:{role_with_password}@")
    with caplog.at_level(logging.INFO, logger="pgkeep.postgres.globals"):
        text, flags = _globals_backup(_config(tmp_path, url), cluster)
    assert f"CREATE ROLE {ROLE};" in text
    assert VERIFIER not in text
    assert flags == ("--no-role-passwords",)
    assert "the role may not read pg_authid" in caplog.text


def test_globals_passwords_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PGKEEP_GLOBALS_PASSWORDS", "false")
    path = _config(tmp_path, "postgresql://u@h/postgres", server="globals_passwords = true")
    settings = load_settings(config=path)
    assert settings.globals_passwords is False
    [spec] = targets.explicit(settings)
    assert spec.settings.globals_passwords is True  # the server's own says otherwise
