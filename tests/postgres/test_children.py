"""What pgkeep's children see: a whitelisted environment, never the service's secrets."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from pgkeep.config import Settings
from pgkeep.postgres.process import child_env
from tests.conftest import ACTOR, core_service

LEAKS = {
    "PGKEEP_JWT_SECRET": "jwt-secret-value-in-env",
    "PGKEEP_SIGNING_KEY": "signing-key-value-in-env-0123456789",
    "AWS_SECRET_ACCESS_KEY": "aws-secret-value-in-env",
    "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE",
    "PGPASSFILE": "/tmp/not-ours",
    "PGSERVICEFILE": "/tmp/not-ours-either",
    "SOME_TOKEN": "other-secret",
}


def test_child_env_is_a_whitelist(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in LEAKS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("LC_ALL", "C.UTF-8")
    monkeypatch.setenv("TZ", "UTC")
    env = child_env(PGPASSWORD="pw")
    assert set(env) <= {"PATH", "HOME", "TZ", "LANG", "LANGUAGE", "PGPASSWORD"} | {
        k for k in env if k.startswith("LC_")
    }
    assert env["PGPASSWORD"] == "pw"
    assert env["LC_ALL"] == "C.UTF-8"
    with pytest.raises(ValueError, match="not a PostgreSQL connection variable"):
        child_env(PGKEEP_JWT_SECRET="x")


def test_pg_dump_and_psql_get_no_secret_of_the_service(
    make_settings: Callable[..., Settings],
    database: str,
    cluster_bin: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Real tools behind a wrapper that records the environment each one was started with."""
    for name, value in LEAKS.items():
        monkeypatch.setenv(name, value)
    seen = tmp_path / "environments"
    wrappers = tmp_path / "bin"
    wrappers.mkdir()
    for tool in ("pg_dump", "psql", "pg_restore"):
        wrapper = wrappers / tool
        wrapper.write_text(
            f'#!/bin/sh\nenv >> {seen}\necho "-- end of {tool}" >> {seen}\n'
            f'exec {cluster_bin / tool} "$@"\n'
        )
        wrapper.chmod(0o755)
    service = core_service(database, tmp_path / "backups", wrappers)
    backup = service.creating.create(None, ACTOR)
    service.proving.verify(backup.name, restore=True, actor=ACTOR)
    text = seen.read_text()
    assert "-- end of pg_dump" in text
    assert "-- end of psql" in text
    for name, value in LEAKS.items():
        assert value not in text
        if name != "PGPASSFILE":
            assert name + "=" not in text
    assert "PGPASSWORD=" in text  # the password arrives, through the environment only
    # The loader's psql gets its own password, in a file with no name (a descriptor), and
    # never pgkeep's: one secret per child.
    blocks = re.split(r"-- end of \w+\n", text)
    loaders = [b for b in blocks if "PGPASSFILE=" in b]
    assert loaders
    for block in loaders:
        assert re.search(r"^PGPASSFILE=/dev/fd/[0-9]+$", block, re.MULTILINE), block
        assert "PGPASSWORD=" not in block


@pytest.fixture
def cluster_bin(make_settings: Callable[..., Settings]) -> Path:
    path = make_settings().pg_bin_dir
    assert path is not None
    return path
