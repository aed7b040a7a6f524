"""Bad configuration stops the process at start with one line naming the setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from pgkeep.config import WEB_DIR, load_settings
from pgkeep.errors import ConfigError
from tests.conftest import SECRET


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PGKEEP_DATABASE_URL", "postgresql://u:p@h:5433/db")
    monkeypatch.setenv("PGKEEP_JWT_SECRET", SECRET * 2)  # HS384 needs 48 bytes
    monkeypatch.setenv("PGKEEP_RETENTION_DAYS", "7")
    monkeypatch.setenv("PGKEEP_BACKUP_DIR", str(tmp_path))
    monkeypatch.setenv("PGKEEP_JWT_ALGORITHMS", "HS256, HS384")
    settings = load_settings()
    assert settings.retention_days == 7
    assert settings.algorithms == ("HS256", "HS384")
    assert settings.backup_dir == tmp_path
    assert (settings.host, settings.port, settings.required_role) == ("127.0.0.1", 8000, "OWNER")
    assert "p@h" not in repr(settings)
    settings.check_for_serving()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"jwt_secret": "short"}, "PGKEEP_JWT_SECRET: must be at least 32 bytes"),
        ({"jwt_secret": SECRET, "jwt_algorithms": "HS512"}, "at least 64 bytes for HS512"),
        ({"jwt_secret": "changeme-changeme-changeme-changeme!"}, "looks like a placeholder"),
        ({"jwt_secret": "a" * 40}, "looks like a placeholder"),
        (
            {"jwt_secret": SECRET, "jwt_algorithms": "none"},
            "PGKEEP_JWT_ALGORITHMS: none not allowed",
        ),
        ({"jwt_secret": SECRET, "jwt_algorithms": "RS256"}, "PGKEEP_JWT_ALGORITHMS: RS256"),
        ({"jwt_public_key": "x", "jwt_algorithms": "HS256"}, "PGKEEP_JWT_ALGORITHMS: HS256"),
        ({"retention_days": "-1"}, "PGKEEP_RETENTION_DAYS"),
        ({"port": "99999"}, "PGKEEP_PORT"),
        ({"backup_dir": WEB_DIR / "b"}, "PGKEEP_BACKUP_DIR: must not be inside"),
    ],
)
def test_bad_settings_name_the_setting(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        load_settings(**overrides)
    assert "\n" not in caught.value.message


def test_serving_needs_a_target_and_exactly_one_key() -> None:
    with pytest.raises(ConfigError, match="PGKEEP_DATABASE_URL: not set"):
        load_settings(jwt_secret=SECRET).check_for_serving()
    with pytest.raises(ConfigError, match="set exactly one of"):
        load_settings(database_url="postgresql://h/db").check_for_serving()
    with pytest.raises(ConfigError, match="set exactly one of"):
        load_settings(
            database_url="postgresql://h/db", jwt_secret=SECRET, jwt_jwks_url="http://x"
        ).check_for_serving()


def test_public_key_file_must_be_readable(tmp_path: Path) -> None:
    settings = load_settings(database_url="postgresql://h/db", jwt_public_key=str(tmp_path / "no"))
    with pytest.raises(ConfigError, match="PGKEEP_JWT_PUBLIC_KEY: cannot read"):
        settings.check_for_serving()
