"""The target's password stays out of argv, logs and messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from pgkeep.errors import ConfigError
from pgkeep.postgres.connection import Connection
from pgkeep.postgres.dump import dump_argv

URL = "postgresql://backup:s3cr%3Dt%20pw@db.example:6543/app?sslmode=require"


def test_target_parses_url_and_holds_password_apart() -> None:
    target = Connection.from_url(URL)
    assert target.dbname == "app"
    assert target.password == "s3cr=t pw"
    assert "s3cr" not in target.conninfo
    assert "s3cr" not in repr(target)
    assert "sslmode=require" in target.conninfo
    assert target.address == "db.example:6543"


def test_dump_argv_carries_no_password() -> None:
    argv = dump_argv(Path("/usr/bin/pg_dump"), Connection.from_url(URL).conninfo)
    assert argv[0] == "/usr/bin/pg_dump"
    assert "--no-password" in argv
    assert not any("s3cr" in arg for arg in argv)


def test_child_env_has_our_password_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGPASSWORD", "inherited")
    assert Connection.from_url(URL).child_env()["PGPASSWORD"] == "s3cr=t pw"
    assert "PGPASSWORD" not in Connection.from_url("postgresql://u@h/db").child_env()


@pytest.mark.parametrize(
    "text",
    [
        "connection to postgresql://backup:s3cr=t pw@db failed",
        "password=s3cr=t pw failed",
        "FATAL: password authentication failed; PASSWORD = 'other secret'",
        "postgres://u:anything@host/db",
    ],
)
def test_redact_removes_passwords(text: str) -> None:
    redacted = Connection.from_url(URL).redact(text)
    assert "s3cr" not in redacted
    assert "other secret" not in redacted
    assert "anything" not in redacted


@pytest.mark.parametrize("url", ["postgresql://host:notaport/db", "postgresql://u@h"])
def test_target_bad_url_is_config_error(url: str) -> None:
    with pytest.raises(ConfigError, match="PGKEEP_DATABASE_URL"):
        Connection.from_url(url)
