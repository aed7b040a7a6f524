"""Bad configuration stops the process at start with one line naming the setting."""

from __future__ import annotations

import json
from pathlib import Path

import pyrage
import pytest

from pgkeep.config import WEB_DIR, load_settings
from pgkeep.errors import ConfigError
from tests.conftest import SECRET, SIGNING_KEY


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


def test_signing_key_is_derived_from_the_jwt_secret_or_required() -> None:
    derived = load_settings(jwt_secret=SECRET).signing_keys()
    assert len(derived[0]) == 32
    assert derived[0] != SECRET.encode()
    assert load_settings(jwt_secret=SECRET).signing_keys() == derived  # stable across starts
    explicit = load_settings(jwt_secret=SECRET, signing_key=SIGNING_KEY).signing_keys()
    assert explicit[0] == SIGNING_KEY.encode()
    public = load_settings(database_url="postgresql://h/db", jwt_public_key="-----BEGIN x")
    with pytest.raises(ConfigError, match="PGKEEP_SIGNING_KEY: not set") as caught:
        public.check_for_serving()
    assert "\n" not in caught.value.message


def test_old_signing_keys_are_accepted_raw_and_derived() -> None:
    """After rotating the JWT secret, the former one in PGKEEP_SIGNING_KEYS_OLD still opens
    manifests signed with the key derived from it."""
    before = load_settings(jwt_secret=SECRET).signing_keys()[0]
    other = "r0tated-" + "Pq9Wm2Zx7Lc4Vb8Nk1Jh6Gf3Ds5Ae0Ty"
    after = load_settings(jwt_secret=other, signing_keys_old=f"{SECRET},{SIGNING_KEY}")
    current, old = after.signing_keys()
    assert current != before
    assert before in old
    assert SIGNING_KEY.encode() in old


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"signing_key": "short"}, "PGKEEP_SIGNING_KEY: must be at least 32 bytes"),
        ({"signing_key": "change-me-change-me-change-me-change-me"}, "PGKEEP_SIGNING_KEY: looks"),
        ({"signing_keys_old": "x" * 40}, "PGKEEP_SIGNING_KEYS_OLD: looks like a placeholder"),
        ({"jwt_max_lifetime": "forever"}, "PGKEEP_JWT_MAX_LIFETIME"),
        ({"max_body_bytes": "10"}, "PGKEEP_MAX_BODY_BYTES"),
        ({"verify_concurrency": "0"}, "PGKEEP_VERIFY_CONCURRENCY"),
        ({"s3_endpoint_url": "http://AKIAX:s3cr3tkey@h:9000"}, "PGKEEP_S3_ENDPOINT_URL: .*cred"),
        ({"s3_endpoint_url": "ftp://h"}, "PGKEEP_S3_ENDPOINT_URL: .*http"),
        ({"s3_max_parts": "10001"}, "PGKEEP_S3_MAX_PARTS"),
    ],
)
def test_bad_new_settings_name_the_setting(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(**overrides)
    # the value itself never appears in the message
    for value in overrides.values():
        if isinstance(value, str) and len(value) > 8:
            with pytest.raises(ConfigError) as caught:
                load_settings(**overrides)
            assert value not in caught.value.message


def test_upper_case_age_recipients_are_kept_lower_case(tmp_path: Path) -> None:
    """`AGE1…` inline or in a recipients file: the same key, kept in its canonical form."""
    inline, listed = (str(pyrage.x25519.Identity.generate().to_public()) for _ in range(2))
    recipients = tmp_path / "recipients.txt"
    recipients.write_text(f"# ops team\n{listed.upper()}\n")
    settings = load_settings(age_recipients=f"{inline.upper()},{recipients}")
    assert settings.age_recipients == (inline, listed)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ('["postgresql://u:hunter2@h/postgres"', "must be a JSON list of URLs"),
        ('{"url": "postgresql://h/postgres"}', "must be a list of URLs"),
        ('"postgresql://h/postgres"', "must be a list of URLs"),
        ('["mysql://u:hunter2@h/db"]', "each item must be a postgresql:// URL"),
        ("[1]", "each item must be a postgresql:// URL"),
    ],
)
def test_rehearsal_urls_must_be_a_json_list_of_urls(
    monkeypatch: pytest.MonkeyPatch, value: str, message: str
) -> None:
    monkeypatch.setenv("PGKEEP_REHEARSAL_DATABASE_URLS", value)
    with pytest.raises(
        ConfigError, match=rf"PGKEEP_REHEARSAL_DATABASE_URLS: .*{message}"
    ) as caught:
        load_settings(jwt_secret=SECRET)
    assert "hunter2" not in f"{caught.value.message} {caught.value.details}"


def test_rehearsal_urls_from_the_environment_and_per_target(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    multi = "postgresql://u:p@a:5432,b:5433/postgres?target_session_attrs=read-write"
    monkeypatch.setenv("PGKEEP_REHEARSAL_DATABASE_URLS", json.dumps([multi]))
    settings = load_settings(jwt_secret=SECRET)
    assert [u.get_secret_value() for u in settings.rehearsal_database_urls] == [multi]
    assert "u:p@" not in repr(settings)
    monkeypatch.delenv("PGKEEP_REHEARSAL_DATABASE_URLS")
    path = tmp_path / "pgkeep.toml"
    path.write_text(
        'rehearsal_database_urls = ["postgresql://h19/postgres"]\n'
        "[targets.crm]\n"
        'database_url = "postgresql://h/crm"\n'
        'rehearsal_database_urls = ["postgresql://h20/postgres", "postgresql://h21/postgres"]\n'
    )
    settings = load_settings(jwt_secret=SECRET, config=path)
    assert [u.get_secret_value() for u in settings.rehearsal_database_urls] == [
        "postgresql://h19/postgres"
    ]
    crm = settings.for_target(settings.targets["crm"])
    assert len(crm.rehearsal_database_urls) == 2
    path.write_text('rehearsal_database_urls = "postgresql://h19/postgres"\n')
    with pytest.raises(
        ConfigError, match=r"pgkeep.toml:1: rehearsal_database_urls: .*list of URLs"
    ):
        load_settings(jwt_secret=SECRET, config=path)
