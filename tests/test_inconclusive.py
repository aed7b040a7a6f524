"""Verdicts that never blame a good backup, on real servers: a source on the oldest major
here (Debian's 15, which has pgcrypto) verified on a separate verify server of the newest
(the PostgreSQL 18 wheel, which lacks it). What the verify server lacks (an extension, a
role: before the restore, or by the SQLSTATE of the restore's error) is inconclusive,
never failed; a backup that will not restore anywhere is still failed."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from pgkeep.cli import EXIT_INCONCLUSIVE, EXIT_NOT_VERIFIED, main
from pgkeep.config import Settings, load_settings
from pgkeep.core import retention, verdicts
from pgkeep.core.models import Backup
from pgkeep.http.app import create_app
from pgkeep.throwaway.cluster import ThrowawayCluster
from tests.conftest import ACTOR, SECRET, backup_files
from tests.test_notify import Receiver, receiver  # noqa: F401 (a fixture)

TABLES = "CREATE TABLE public.t (id int PRIMARY KEY, v text); INSERT INTO public.t VALUES (1, 'a');"
# A table whose rows refuse to be restored into pgkeep's scratch databases (raising the
# SQLSTATE given): a backup no server can test-restore, or its owner playing verdicts.
GUARDED = """
CREATE FUNCTION public.here() RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
  IF pg_catalog.current_database() LIKE 'pgkeep%' THEN
    RAISE EXCEPTION 'not restorable here' USING ERRCODE = '{code}';
  END IF;
  RETURN true;
END $$;
CREATE TABLE public.guarded (a int CHECK (public.here()));
INSERT INTO public.guarded VALUES (1);
"""


@pytest.fixture
def source(older_cluster: ThrowawayCluster) -> Iterator[str]:
    """A database on the older server; its name."""
    name = "src_" + secrets.token_hex(4)
    older_cluster.create_database(name)
    older_cluster.execute(TABLES, name)
    yield name
    older_cluster.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _settings(
    older: ThrowawayCluster, dbname: str, verify: ThrowawayCluster, backup_dir: Path, **more: object
) -> Settings:
    return load_settings(
        database_url=older.url(dbname),
        jwt_secret=SECRET,
        backup_dir=backup_dir,
        pg_bin_dir=verify.bin_dir,
        verify_database_url=verify.url("postgres"),
        **more,
    )


def _backup(settings: Settings) -> tuple[str, Backup]:
    from pgkeep import wiring

    service = wiring.build(settings).service()
    name = service.creating.create(None, ACTOR).name
    return name, service.catalog.get(name)


def _verify(settings: Settings, name: str) -> tuple[verdicts.Verdict, Backup]:
    from pgkeep import wiring

    service = wiring.build(settings).service()
    service.proving.verify(name, restore=True, actor=ACTOR)
    backup = service.catalog.get(name)
    return verdicts.verdict(backup), backup


def _floor_keeps(backup: Backup) -> bool:
    """Whether retention's floor keeps it once every other rule has let it go."""
    policy = retention.RetentionPolicy(max_age_days=1, min_keep=1)
    [decision] = retention.plan([backup], policy, backup.created_at + timedelta(days=10))
    return decision.keep


@pytest.mark.anyio
async def test_an_extension_missing_on_the_verify_server_is_inconclusive_never_failed(
    older_cluster: ThrowawayCluster,
    cluster: ThrowawayCluster,
    source: str,
    backup_dir: Path,
    receiver: Receiver,  # noqa: F811
) -> None:
    older_cluster.execute("CREATE EXTENSION pgcrypto", source)
    settings = _settings(
        older_cluster,
        source,
        cluster,
        backup_dir,
        notify_urls=receiver.url,
        notify_secret="n0tify-" + "s3cret-k9Qw7ZpL2mXv8RbN4cYd",
    )
    token = {"Authorization": "Bearer " + _token(settings)}
    transport = httpx.ASGITransport(app=create_app(settings))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as api:
        name = (await api.post("/api/backup/create", headers=token)).json()["filename"]
        answer = await api.post(f"/api/backup/{name}/verify", headers=token, json={"restore": True})
        body = answer.json()
        assert answer.status_code == 200, answer.text
        assert body["verified"] is None
        assert "verified" in body
        assert body["verdict"] == "inconclusive"
        [env] = [c for c in body["checks"] if c["name"] == "environment"]
        assert "extension pgcrypto is not available" in env["details"]
        assert "install pgcrypto" in env["details"]
        assert all(c["ok"] for c in body["checks"] if c["name"] != "environment")
        assert {"sha256", "readable"} <= {c["name"] for c in body["checks"]}
        listed = (await api.get("/api/backup/list", headers=token)).json()["backups"]
    [item] = [b for b in listed if b["filename"] == name]
    assert (item["verdict"], item["verified"], item["verifyProblem"]) == (
        "inconclusive",
        None,
        None,
    )
    assert item["verification"]["state"] == "inconclusive"
    assert item["verification"]["check"] == "environment"
    assert "install pgcrypto" in item["verification"]["details"]
    [(headers, sent)] = receiver.wait_for(1)
    assert headers["x-pgkeep-event"] == "verify.environment"
    assert "pgcrypto" in json.loads(sent)["text"]
    assert "pw" not in json.loads(sent)["text"]

    from pgkeep import wiring

    backup = wiring.build(settings).service().catalog.get(name)
    assert backup.manifest is not None
    assert backup.manifest.verification is not None
    assert backup.manifest.verification.verified is None  # recorded, signed
    assert _floor_keeps(backup)  # an inconclusive verify never counts against the backup


def _token(settings: Settings) -> str:
    from pgkeep import tokens

    return tokens.mint(settings, sub="tester", role="OWNER", ttl=timedelta(minutes=5))


def test_a_role_missing_on_the_verify_server_is_inconclusive(
    older_cluster: ThrowawayCluster, cluster: ThrowawayCluster, source: str, backup_dir: Path
) -> None:
    role = "owner_" + secrets.token_hex(3)
    older_cluster.execute(
        f"CREATE ROLE {role} NOLOGIN; ALTER TABLE public.t OWNER TO {role}", source
    )
    try:
        settings = _settings(older_cluster, source, cluster, backup_dir)
        name, _ = _backup(settings)
        verdict, backup = _verify(settings, name)
    finally:
        older_cluster.execute(f"DROP OWNED BY {role} CASCADE", source)
        older_cluster.execute(f"DROP ROLE {role}")
    assert verdict.state == "inconclusive", verdict
    assert f"role {role} does not exist" in (verdict.details or "")
    assert f"create role {role}" in (verdict.details or "")
    assert _floor_keeps(backup)


def test_a_role_named_only_in_a_grant_is_found_before_the_restore(
    older_cluster: ThrowawayCluster, cluster: ThrowawayCluster, source: str, backup_dir: Path
) -> None:
    """The manifest records the roles its grants name (grantees, grantors, default
    privileges' roles): one the verify server lacks is found before any restore."""
    role = "reader_" + secrets.token_hex(3)
    older_cluster.execute(f"CREATE ROLE {role} NOLOGIN; GRANT SELECT ON public.t TO {role}", source)
    try:
        settings = _settings(older_cluster, source, cluster, backup_dir)
        name, made = _backup(settings)
        verdict, backup = _verify(settings, name)
    finally:
        older_cluster.execute(f"DROP OWNED BY {role}", source)
        older_cluster.execute(f"DROP ROLE {role}")
    assert made.manifest is not None
    assert role in made.manifest.grantees
    assert verdict.state == "inconclusive", verdict
    assert f"role {role} does not exist on the verify server" in (verdict.details or "")
    assert _floor_keeps(backup)


def test_a_role_named_only_in_a_policy_is_found_by_its_sqlstate(
    older_cluster: ThrowawayCluster, cluster: ThrowawayCluster, source: str, backup_dir: Path
) -> None:
    """No manifest names a policy's roles: the restore meets it (42704), inconclusive."""
    role = "reader_" + secrets.token_hex(3)
    older_cluster.execute(
        f"CREATE ROLE {role} NOLOGIN; CREATE POLICY p ON public.t TO {role} USING (true)", source
    )
    try:
        settings = _settings(older_cluster, source, cluster, backup_dir)
        name, _ = _backup(settings)
        verdict, backup = _verify(settings, name)
    finally:
        older_cluster.execute(f"DROP OWNED BY {role}", source)
        older_cluster.execute(f"DROP ROLE {role}")
    assert verdict.state == "inconclusive", verdict
    assert "SQLSTATE 42704" in (verdict.details or "")
    assert role in (verdict.details or "")
    assert _floor_keeps(backup)


@pytest.mark.parametrize(("code", "state"), [("P0001", "failed"), ("0A000", "inconclusive")])
def test_a_backup_that_restores_nowhere_is_failed_unless_its_owner_says_otherwise(
    older_cluster: ThrowawayCluster,
    cluster: ThrowawayCluster,
    source: str,
    backup_dir: Path,
    code: str,
    state: str,
) -> None:
    """Rows refused by the database's own code: failed. Its owner can raise an environment
    SQLSTATE instead and turn that into inconclusive (docs/threat-model.md)."""
    older_cluster.execute(GUARDED.format(code=code), source)
    settings = _settings(older_cluster, source, cluster, backup_dir)
    name, _ = _backup(settings)
    verdict, backup = _verify(settings, name)
    assert verdict.state == state, verdict
    assert "not restorable here" in (verdict.details or "")
    assert _floor_keeps(backup) is (state == "inconclusive")


def test_cli_verify_exits_7_when_inconclusive_and_6_when_failed(
    older_cluster: ThrowawayCluster,
    cluster: ThrowawayCluster,
    source: str,
    backup_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    older_cluster.execute("CREATE EXTENSION pgcrypto", source)
    for key, value in {
        "DATABASE_URL": older_cluster.url(source),
        "JWT_SECRET": SECRET,
        "BACKUP_DIR": str(backup_dir),
        "PG_BIN_DIR": str(cluster.bin_dir),
        "VERIFY_DATABASE_URL": cluster.url("postgres"),
    }.items():
        monkeypatch.setenv(f"PGKEEP_{key}", value)
    assert main(["backup", "create"]) == 0
    [name] = [n for n in backup_files(backup_dir) if not n.endswith(".json")]
    assert main(["backup", "verify", name, "--restore"]) == EXIT_INCONCLUSIVE == 7
    assert "INCONCLUSIVE" in capsys.readouterr().out
    monkeypatch.setenv("PGKEEP_VERIFY_DATABASE_URL", older_cluster.url("postgres"))
    assert main(["backup", "verify", name, "--restore"]) == 0  # where pgcrypto is
    stored = backup_dir / name
    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 0xFF
    stored.write_bytes(bytes(data))
    assert main(["backup", "verify", name, "--restore"]) == EXIT_NOT_VERIFIED
