"""Importing: the operator's conscious act, on the CLI only, audited; nothing else signs."""

from __future__ import annotations

import gzip
import json
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pgkeep import wiring
from pgkeep.cli import main
from pgkeep.config import Settings
from pgkeep.http.app import create_app
from pgkeep.postgres.cluster import ThrowawayCluster
from tests.conftest import ACTOR, plant_backup

PAST = datetime(2024, 12, 9, 10, 30, 45, tzinfo=UTC)


@pytest.fixture
def cli_env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("PGKEEP_DATABASE_URL", settings.require_database_url())
    monkeypatch.setenv("PGKEEP_JWT_SECRET", settings.require_signing_secret())
    monkeypatch.setenv("PGKEEP_BACKUP_DIR", str(settings.backup_dir))
    monkeypatch.setenv("PGKEEP_PG_BIN_DIR", str(settings.pg_bin_dir))
    return settings


def test_a_real_plain_backup_records_and_opens_with_its_restrict_key(settings: Settings) -> None:
    service = wiring.build(settings).service()
    backup = service.creating.create(None, ACTOR)
    assert backup.manifest is not None
    key = backup.manifest.restrict_key
    assert key is not None
    assert len(key) == 32
    head = (settings.backup_dir / backup.name).read_bytes()[:400].decode()
    assert f"\n\\restrict {key}\n" in head
    assert f"\\unrestrict {key}" in (settings.backup_dir / backup.name).read_text()[-300:]


def test_import_existing_signs_only_what_still_matches(
    cli_env: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = cli_env
    good = plant_backup(settings, PAST, b"-- PostgreSQL database dump\nSELECT 1;\n", signed=False)
    tampered = plant_backup(settings, PAST + timedelta(seconds=1), b"-- ok\n", signed=False)
    (settings.backup_dir / tampered).write_bytes(b"-- changed after the manifest\n")
    by_hand = "backup-2024-12-09T10-30-50.sql"
    (settings.backup_dir / by_hand).write_text("-- no manifest\n")
    service = wiring.build(settings).service()
    assert [b.signed for b in service.catalog.list()] == [False, False, False]
    assert main(["backup", "import", "--existing"]) == 6  # not all could be imported
    out = capsys.readouterr().out
    assert f"imported {good}: matches the sha256" in out
    assert f"skipped  {tampered}: backup {tampered!r} does not match its manifest" in out
    assert f"skipped  {by_hand}: no manifest" in out
    assert "1 of 3 unsigned backups imported" in out
    signed = {b.name: b.signed for b in wiring.build(settings).service().catalog.list()}
    assert signed == {good: True, tampered: False, by_hand: False}
    lines = (settings.backup_dir / "pgkeep-audit.jsonl").read_text().splitlines()
    audit = [json.loads(line) for line in lines]
    imports = [(e["backup"], e["result"]) for e in audit if e["action"] == "import"]
    assert imports == [(tampered, "failed"), (good, "succeeded")]  # newest first
    assert all(e["via"] == "cli" for e in audit)


@pytest.mark.parametrize("kind", ["plain", "gzip", "custom"])
def test_import_a_dump_from_elsewhere_then_restore_it(
    cli_env: Settings,
    cluster: ThrowawayCluster,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    kind: str,
) -> None:
    settings = cli_env
    source = settings.require_database_url()
    dump = tmp_path / "elsewhere.dump"
    fmt = "custom" if kind == "custom" else "plain"
    subprocess.run(
        [str(cluster.bin_dir / "pg_dump"), f"--format={fmt}", f"--file={dump}", source],
        check=True,
    )
    if kind == "gzip":
        dump.write_bytes(gzip.compress(dump.read_bytes()))
    assert main(["backup", "import", str(dump)]) == 0
    name = capsys.readouterr().out.split()[3]
    assert name.endswith({"plain": ".sql", "gzip": ".sql.gz", "custom": ".dump"}[kind])
    target = f"imported_{kind}"
    try:
        assert main(["backup", "restore", name, "--target-database", target]) == 0
        assert f"restored {name} into {target}" in capsys.readouterr().out
    finally:
        cluster.execute(f"DROP DATABASE IF EXISTS {target} WITH (FORCE)")


def test_import_refuses_what_is_not_a_dump(
    cli_env: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for content, code, message in (
        (b"", 2, "the file is empty"),
        (b"rm -rf /\n", 2, "does not look like a pg_dump plain dump"),
        (b"\x1f\x8b" + b"garbage" * 10, 1, "not a readable dump"),
    ):
        path = tmp_path / "bad"
        path.write_bytes(content)
        assert main(["backup", "import", str(path)]) == code
        assert message in capsys.readouterr().err
    assert main(["backup", "import"]) == 2
    assert "name a FILE to import, or --existing" in capsys.readouterr().err
    assert [p.name for p in cli_env.backup_dir.iterdir() if p.name.startswith("backup-")] == []


def test_import_is_not_offered_over_http(
    api_routes: list[str],
) -> None:
    assert not [path for path in api_routes if "import" in path]


@pytest.fixture
def api_routes(make_settings: Callable[..., Settings]) -> list[str]:
    return list(create_app(make_settings()).openapi()["paths"])
