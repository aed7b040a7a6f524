"""Table-level restores of Pagila on a real server: only the named tables (with what they
need) reach the new database, their rows proven, foreign keys to dropped tables listed;
plain, custom and encrypted; refusals come before any work."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from pgkeep import tokens
from pgkeep.cli import main
from pgkeep.config import Settings, load_settings
from pgkeep.core.models import Backup, BackupOptions, Compression, DumpFormat, RestoreResult
from pgkeep.core.selecting import Selection
from pgkeep.core.service import BackupService
from pgkeep.http.app import create_app
from pgkeep.postgres import catalog
from pgkeep.throwaway.cluster import ThrowawayCluster
from tests.conftest import ACTOR, SECRET, core_service
from tests.roundtrip import PAGILA, load
from tests.test_encryption import AGE, Key

SOURCE = "tables_pagila"
FILM_ACTOR_FKS = {
    ("public.film_actor", "film_actor_actor_id_fkey", "public.actor"),
    ("public.film_actor", "film_actor_film_id_fkey", "public.film"),
}


@dataclass(frozen=True)
class Pagila:
    cluster: ThrowawayCluster
    backup_dir: Path
    counts: dict[str, int]
    plain: Backup
    custom: Backup

    def settings(self) -> Settings:
        return load_settings(
            database_url=self.cluster.url(SOURCE),
            jwt_secret=SECRET,
            backup_dir=self.backup_dir,
            pg_bin_dir=self.cluster.bin_dir,
        )

    def service(self, backup_dir: Path | None = None, **settings: Any) -> BackupService:
        where = backup_dir or self.backup_dir
        return core_service(self.cluster.url(SOURCE), where, self.cluster.bin_dir, **settings)


@pytest.fixture(scope="module")
def pagila(cluster: ThrowawayCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pagila]:
    """Pagila loaded once, and one backup of it per format."""
    if not PAGILA.exists():
        pytest.skip(f"the Pagila fixture is not at {PAGILA}")
    url = cluster.create_database(SOURCE)
    load(
        url, PAGILA / "pagila-schema.sql", PAGILA / "pagila-data.sql", psql=cluster.bin_dir / "psql"
    )
    with psycopg.connect(url, autocommit=True) as conn:
        counts = catalog.row_counts(conn)
    backup_dir = tmp_path_factory.mktemp("tables") / "backups"
    service = core_service(url, backup_dir, cluster.bin_dir)
    plain = service.creating.create(BackupOptions(DumpFormat.PLAIN, Compression.ZSTD), ACTOR)
    custom = service.creating.create(BackupOptions(DumpFormat.CUSTOM, Compression.GZIP), ACTOR)
    yield Pagila(cluster, backup_dir, counts, plain, custom)
    cluster.execute(f'DROP DATABASE IF EXISTS "{SOURCE}" WITH (FORCE)')


@pytest.fixture
def into(cluster: ThrowawayCluster, request: pytest.FixtureRequest) -> Iterator[str]:
    name = "tables_" + request.node.name.split("[")[-1].strip("]").replace("-", "_")[-40:]
    yield name
    cluster.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_table_restore_of_a_partition_keeps_its_parent_only(pagila: Pagila, into: str) -> None:
    service = pagila.service()
    chosen = Selection(tables=("public.payment_p2022_01",))
    result = service.proving.restore(pagila.custom.name, into, actor=ACTOR, selection=chosen)
    assert [(t.table, t.actual) for t in result.tables] == [("public.payment_p2022_01", 723)]
    assert _relations(pagila.cluster, into, "rpS") == {
        "payment",
        "payment_p2022_01",
        "payment_payment_id_seq",
    }
    assert {(k.name, k.references) for k in result.dropped_foreign_keys} == {
        ("payment_p2022_01_customer_id_fkey", "public.customer"),
        ("payment_p2022_01_rental_id_fkey", "public.rental"),
        ("payment_p2022_01_staff_id_fkey", "public.staff"),
    }


def _user_tables(cluster: ThrowawayCluster, database: str) -> set[str]:
    with psycopg.connect(cluster.url(database), autocommit=True) as conn:
        return set(catalog.row_counts(conn))


def _relations(cluster: ThrowawayCluster, database: str, kinds: str) -> set[str]:
    with psycopg.connect(cluster.url(database), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'public' AND c.relkind = ANY(%s)",
            (list(kinds),),
        ).fetchall()
    return {str(r[0]) for r in rows}


def _dropped(result: RestoreResult) -> set[tuple[str, str, str]]:
    return {(k.table, k.name, k.references) for k in result.dropped_foreign_keys}


@pytest.mark.parametrize("fmt", ["plain", "custom"])
def test_table_restore_keeps_only_the_named_table(pagila: Pagila, fmt: str, into: str) -> None:
    service = pagila.service()
    backup = pagila.plain if fmt == "plain" else pagila.custom
    chosen = Selection(tables=("public.film_actor",))
    result = service.proving.restore(backup.name, into, actor=ACTOR, selection=chosen)

    assert [(t.table, t.expected, t.actual) for t in result.tables] == [
        ("public.film_actor", pagila.counts["public.film_actor"], 5462)
    ]
    assert _user_tables(pagila.cluster, into) == {"public.film_actor"}
    assert _dropped(result) == FILM_ACTOR_FKS
    assert _relations(pagila.cluster, into, "vmS") == set()  # no views, no other sequences
    assert _relations(pagila.cluster, into, "i") == {"film_actor_pkey", "idx_fk_film_id"}
    with psycopg.connect(pagila.cluster.url(into), autocommit=True) as conn:
        triggers = conn.execute(
            "SELECT t.tgname, t.tgfoid::regproc::text FROM pg_trigger t WHERE NOT t.tgisinternal"
        ).fetchall()
        assert triggers == [("last_updated", "last_updated")]
        functions = conn.execute(
            "SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
            " WHERE n.nspname = 'public'"
        ).fetchall()
        assert functions == [("last_updated",)]


@pytest.mark.skipif(AGE is None, reason="Debian's age is not installed (make test does)")
def test_table_restore_of_an_encrypted_backup(pagila: Pagila, into: str, tmp_path: Path) -> None:
    key = Key(tmp_path, "tables")
    service = pagila.service(
        backup_dir=tmp_path / "encrypted", age_recipients=key.public, age_identity_file=key.file
    )
    backup = service.creating.create(BackupOptions(DumpFormat.CUSTOM, Compression.GZIP), ACTOR)
    assert backup.encrypted
    chosen = Selection(tables=("public.actor",))
    result = service.proving.restore(backup.name, into, actor=ACTOR, selection=chosen)

    assert [(t.table, t.expected, t.actual) for t in result.tables] == [
        ("public.actor", pagila.counts["public.actor"], 200)
    ]
    assert _user_tables(pagila.cluster, into) == {"public.actor"}
    assert _relations(pagila.cluster, into, "S") == {"actor_actor_id_seq"}
    assert result.dropped_foreign_keys == ()


async def _post(
    pagila: Pagila, name: str, body: Mapping[str, object], query: str = ""
) -> tuple[httpx.Response, dict[str, Any] | None]:
    """POST a restore; the answer, and with `?async=true` the job once it is over."""
    settings = pagila.settings()
    app = create_app(settings)
    token = tokens.mint(settings, sub="alice", role="OWNER", ttl=timedelta(hours=1))
    auth = {"Authorization": f"Bearer {token}"}
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://pgkeep.test") as client,
    ):
        response = await client.post(f"/api/backup/{name}/restore{query}", json=body, headers=auth)
        jobs = await client.get("/api/backup/jobs", headers=auth)
        if response.status_code == 422:
            assert jobs.json()["count"] == 0  # refused before any job started
        if response.status_code != 202:
            return response, None
        for _ in range(1200):
            job: dict[str, Any] = (
                await client.get(response.headers["Location"], headers=auth)
            ).json()
            if job["job"]["finishedAt"] is not None:
                return response, job["job"]
            await asyncio.sleep(0.05)
    raise AssertionError("the restore job did not finish")


def _databases(cluster: ThrowawayCluster) -> set[str]:
    with psycopg.connect(cluster.url(), autocommit=True) as conn:
        return {str(r[0]) for r in conn.execute("SELECT datname FROM pg_database").fetchall()}


@pytest.mark.anyio
async def test_table_restore_over_http_lists_the_dropped_foreign_keys(
    pagila: Pagila, into: str
) -> None:
    body = {"targetDatabase": into, "tables": ["public.film_actor"]}
    response, _ = await _post(pagila, pagila.custom.name, body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["tables"] == [
        {"table": "public.film_actor", "expectedRows": 5462, "restoredRows": 5462, "ok": True}
    ]
    assert {(k["table"], k["name"], k["references"]) for k in answer["droppedForeignKeys"]} == (
        FILM_ACTOR_FKS
    )
    assert _user_tables(pagila.cluster, into) == {"public.film_actor"}


@pytest.mark.anyio
async def test_table_restore_runs_as_an_async_job(pagila: Pagila, into: str) -> None:
    body = {"targetDatabase": into, "tables": ["public.actor"]}
    response, job = await _post(pagila, pagila.plain.name, body, "?async=true")
    assert response.status_code == 202, response.text
    assert job is not None
    assert job["status"] == "succeeded", job
    assert job["kind"] == "restore"
    assert _user_tables(pagila.cluster, into) == {"public.actor"}


@pytest.mark.anyio
async def test_table_restore_refuses_unknown_names_before_any_work(
    pagila: Pagila, into: str
) -> None:
    before = _databases(pagila.cluster)
    body = {
        "targetDatabase": into,
        "tables": ["public.actor", "public.nope", "actor"],
        "schemas": ["sales"],
    }
    response, _ = await _post(pagila, pagila.plain.name, body, "?async=true")
    assert response.status_code == 422, response.text
    response, _ = await _post(pagila, pagila.plain.name, body)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert "table public.nope" in error
    assert "table actor" in error
    assert "schema sales" in error
    assert "public.actor," not in error
    assert "rowCounts" in response.json()["details"]
    assert _databases(pagila.cluster) == before


@pytest.mark.anyio
async def test_table_restore_refuses_to_replace_a_database(pagila: Pagila) -> None:
    before = _databases(pagila.cluster)
    body = {
        "targetDatabase": SOURCE,
        "replace": True,
        "confirm": SOURCE,
        "tables": ["public.actor"],
    }
    response, _ = await _post(pagila, pagila.plain.name, body)
    assert response.status_code == 422, response.text
    assert "new database" in response.json()["error"]
    assert _databases(pagila.cluster) == before
    assert _user_tables(pagila.cluster, SOURCE) == set(pagila.counts)


@pytest.mark.anyio
async def test_table_restore_refuses_an_empty_list(pagila: Pagila, into: str) -> None:
    response, _ = await _post(pagila, pagila.plain.name, {"targetDatabase": into, "tables": []})
    assert response.status_code == 400, response.text


def test_cli_restores_one_table(
    pagila: Pagila, into: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PGKEEP_DATABASE_URL", pagila.cluster.url(SOURCE))
    monkeypatch.setenv("PGKEEP_JWT_SECRET", SECRET)
    monkeypatch.setenv("PGKEEP_BACKUP_DIR", str(pagila.backup_dir))
    monkeypatch.setenv("PGKEEP_PG_BIN_DIR", str(pagila.cluster.bin_dir))
    argv = ["backup", "restore", pagila.plain.name, "--target-database", into]
    assert main([*argv, "--table", "public.film_actor"]) == 0
    out = capsys.readouterr().out
    assert "public.film_actor\t5462 rows\n" in out
    assert (
        "dropped foreign key film_actor_actor_id_fkey of public.film_actor (to public.actor)" in out
    )
    assert _user_tables(pagila.cluster, into) == {"public.film_actor"}
    assert main([*argv, "--table", "public.nope"]) == 2
    assert "holds no table public.nope" in capsys.readouterr().err
