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
from pgkeep.throwaway.cluster import ThrowawayCluster
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
    good = plant_backup(
        settings, PAST, b"-- PostgreSQL database dump\nSET statement_timeout = 0;\n", signed=False
    )
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
    assert imports == [  # newest first, each started before it was done
        (tampered, "started"),
        (tampered, "failed"),
        (good, "started"),
        (good, "succeeded"),
    ]
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


LAUNDERED = [
    # The planter's own key lifts psql's restriction, then a shell command.
    b"-- PostgreSQL database dump\n\\restrict K1\n\\unrestrict K1\n\\! touch {marker}\n",
    # SQL that runs a program on the server, where pg_dump writes only schema.
    b"-- PostgreSQL database dump\nCOPY (SELECT 1) TO PROGRAM 'touch {marker}';\n",
    b"-- PostgreSQL database dump\nDO $$ BEGIN PERFORM 1; END $$;\n",
    b"-- PostgreSQL database dump\nSELECT public.evil();\n",
    b"-- PostgreSQL database dump\nSET ROLE postgres;\n",
    b"-- PostgreSQL database dump\nCREATE TABLE t AS SELECT 1;\n",
    # Schema before any entry's header runs in pgkeep's own session: none may be the dump's
    # code, a role, or a refresh (an independent review signed and ran this one).
    b"-- PostgreSQL database dump\n"
    b"CREATE FUNCTION public.x() RETURNS integer LANGUAGE plpgsql AS $$ BEGIN"
    b" COPY (SELECT 1) TO PROGRAM 'touch {marker}'; RETURN 1; END $$;\n"
    b"CREATE ROLE planted_superuser SUPERUSER LOGIN PASSWORD 'planted';\n"
    b"CREATE MATERIALIZED VIEW public.v AS SELECT public.x() AS a WITH NO DATA;\n"
    b"REFRESH MATERIALIZED VIEW public.v;\n",
    # An entry whose header says the admin runs it (an ACL) holding anything but grants.
    b"-- PostgreSQL database dump\n--\n-- Name: TABLE t; Type: ACL; Schema: public; Owner: a\n"
    b"--\n\nCREATE ROLE planted_superuser SUPERUSER;\n",
    b"-- PostgreSQL database dump\n--\n-- Name: TABLE t; Type: ACL; Schema: public; Owner: a\n"
    b"--\n\nGRANT pg_execute_server_program TO a;\n",
    # Anywhere: a role's password or attributes.
    b"-- PostgreSQL database dump\n--\n-- Name: t; Type: TABLE; Schema: public; Owner: a\n"
    b"--\n\nALTER ROLE a PASSWORD 'stolen';\n",
]


@pytest.mark.parametrize("content", LAUNDERED, ids=range(len(LAUNDERED)))
def test_a_planted_dump_is_never_laundered_into_a_signed_backup(
    cli_env: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes
) -> None:
    """A store writer plants a file and a 0.1.0-shaped manifest whose sha256 matches; the
    operator imports what they believe are old backups, or the file itself: neither signs it."""
    settings = cli_env
    marker = tmp_path / "laundered"
    data = content.replace(b"{marker}", str(marker).encode())
    planted = plant_backup(settings, PAST, data, signed=False)
    assert main(["backup", "import", "--existing"]) == 6
    assert f"skipped  {planted}" in capsys.readouterr().out
    path = tmp_path / "elsewhere.sql"
    path.write_bytes(data)
    assert main(["backup", "import", str(path)]) != 0
    assert "not imported" in capsys.readouterr().err
    service = wiring.build(settings).service()
    assert [(b.name, b.signed) for b in service.catalog.list()] == [(planted, False)]
    assert not marker.exists()


def test_a_restrict_key_in_a_planted_manifest_makes_it_tampered(
    cli_env: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = cli_env
    planted = plant_backup(settings, PAST, b"-- PostgreSQL database dump\n", signed=False)
    path = settings.backup_dir / (planted + ".json")
    path.write_text(path.read_text().replace('"sha256"', '"restrictKey": "K1", "sha256"', 1))
    assert main(["backup", "import", "--existing"]) == 6
    assert f"skipped  {planted}: manifest tampered with" in capsys.readouterr().out


def test_an_imported_archives_code_never_runs_as_the_superuser_it_names(
    cli_env: Settings,
    cluster: ThrowawayCluster,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An archive from elsewhere whose materialized view, owned by a superuser, runs a program
    when refreshed in a restore: imported (it holds only what pg_dump writes), but restored,
    its entries are the loader's until the very end, so the refresh runs as the loader and
    fails; no program runs."""
    marker = Path("/tmp") / f"pgkeep-import-{tmp_path.name}"
    marker.unlink(missing_ok=True)
    source = "import_trojan_" + tmp_path.name[-8:].lower().replace("-", "_")
    cluster.execute(f"DROP DATABASE IF EXISTS {source}")
    cluster.execute(f"CREATE DATABASE {source}")
    cluster.execute(
        "CREATE FUNCTION public.x() RETURNS integer LANGUAGE plpgsql AS $$ BEGIN"
        " IF pg_catalog.current_database() LIKE 'pgkeep\\_%' THEN"
        f" COPY (SELECT 1) TO PROGRAM 'touch {marker}'; END IF; RETURN 1; END $$;"
        " CREATE MATERIALIZED VIEW public.v AS SELECT public.x() AS a;",
        source,
    )
    dump = tmp_path / "elsewhere.dump"
    url = cluster.url(source)
    subprocess.run(
        [str(cluster.bin_dir / "pg_dump"), "--format=custom", f"--file={dump}", url], check=True
    )
    assert main(["backup", "import", str(dump)]) == 0
    name = capsys.readouterr().out.split()[3]
    try:
        assert main(["backup", "restore", name, "--target-database", "imported_trojan"]) != 0
        assert "permission denied" in capsys.readouterr().err
        assert main(["backup", "verify", name, "--restore"]) != 0
    finally:
        cluster.execute("DROP DATABASE IF EXISTS imported_trojan WITH (FORCE)")
        cluster.execute(f"DROP DATABASE IF EXISTS {source} WITH (FORCE)")
    assert not marker.exists()


@pytest.mark.parametrize("compress", ["0", "6"])
def test_an_imported_archive_lists_the_compression_it_has_inside(
    cli_env: Settings,
    cluster: ThrowawayCluster,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    compress: str,
) -> None:
    """pg_dump -Fc compresses with gzip by default: an import listed it as "none"; now the
    archive's header says."""
    dump = tmp_path / "elsewhere.dump"
    source = cli_env.require_database_url()
    subprocess.run(
        [
            str(cluster.bin_dir / "pg_dump"),
            "--format=custom",
            f"--compress={compress}",
            f"--file={dump}",
            source,
        ],
        check=True,
    )
    assert main(["backup", "import", str(dump)]) == 0
    service = wiring.build(cli_env).service()
    [backup] = service.catalog.list()
    assert backup.manifest is not None
    assert backup.manifest.compression == ("none" if compress == "0" else "gzip")


@pytest.mark.parametrize(
    ("header", "compression"),
    [
        (b"PGDMP\x01\x0e\x00\x04\x08\x01\x01\xff\xff\xff\xff", "gzip"),  # 1.14: level -1
        (b"PGDMP\x01\x0e\x00\x04\x08\x01\x00\x00\x00\x00\x00", "none"),  # 1.14: level 0
        (b"PGDMP\x01\x10\x00\x04\x08\x01\x01", "gzip"),  # 1.16: the algorithm, gzip
        (b"PGDMP\x01\x10\x00\x04\x08\x01\x03", "none"),  # zstd inside: not pgkeep's
        (b"PGDMP\x01", "none"),  # too short to say
    ],
)
def test_an_archives_header_says_how_it_compresses(header: bytes, compression: str) -> None:
    from pgkeep.core.importing import _archive_compression

    assert _archive_compression(header) == compression
