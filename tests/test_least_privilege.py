"""pgkeep as the role the docs say to run it as (postgres/privileges.py SETUP_SQL, no superuser):
backups, test restores and restores of a database an ordinary role owns come back identical
(owners, grants, every row, a superuser's extension), and what is missing is named."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from pgkeep import wiring
from pgkeep.config import load_settings
from pgkeep.core.models import BackupOptions, Compression, DumpFormat
from pgkeep.core.selecting import Selection
from pgkeep.errors import ConfigError
from pgkeep.postgres import catalog
from pgkeep.postgres.privileges import SETUP_SQL
from pgkeep.throwaway.cluster import ThrowawayCluster
from tests.conftest import ACTOR, SAMPLE_SQL, SECRET
from tests.roundtrip import fingerprint

EXTRA = """
CREATE SCHEMA sales;
CREATE TABLE sales.orders (id bigint PRIMARY KEY, attrs public.hstore, note text);
INSERT INTO sales.orders SELECT i, public.hstore('k', i::text), 'order ' || i
FROM generate_series(1, 200) AS i;
CREATE SEQUENCE sales.numbers START 7;
SELECT nextval('sales.numbers');
GRANT USAGE ON SCHEMA sales TO {reader};
GRANT SELECT ON sales.orders TO {reader};
REVOKE ALL ON TABLE public.customer FROM PUBLIC;
COMMENT ON TABLE sales.orders IS 'kept by {owner}';
"""


@dataclass(frozen=True)
class Roles:
    pgkeep: str
    password: str
    owner: str
    reader: str


def _execute_each(cluster: ThrowawayCluster, sql: str, dbname: str = "postgres") -> None:
    for statement in filter(str.strip, sql.split(";\n")):
        try:
            cluster.execute(statement, dbname)
        except psycopg.errors.DuplicateObject:
            continue  # pgkeep_loaders, made by an earlier test's pgkeep


@pytest.fixture
def roles(cluster: ThrowawayCluster) -> Iterator[Roles]:
    tag = secrets.token_hex(3)
    found = Roles(f"keeper_{tag}", secrets.token_urlsafe(12), f"shop_{tag}", f"reader_{tag}")
    cluster.execute(f"CREATE ROLE {found.owner}; CREATE ROLE {found.reader}")
    setup = SETUP_SQL.format(role=found.pgkeep, password=f"'{found.password}'", owners=found.owner)
    _execute_each(cluster, setup)
    yield found
    cluster.execute(f"DROP DATABASE IF EXISTS {found.pgkeep} WITH (FORCE)")
    for role in (found.pgkeep, found.owner, found.reader):
        cluster.execute(f"DROP OWNED BY {role}; DROP ROLE {role}")


@pytest.fixture
def owned(cluster: ThrowawayCluster, roles: Roles) -> Iterator[str]:
    """A database its ordinary owner filled; a superuser added an extension to it."""
    name = "lp_" + secrets.token_hex(4)
    cluster.execute(f"CREATE DATABASE {name} OWNER {roles.owner}")
    cluster.execute("CREATE EXTENSION hstore", name)
    with psycopg.connect(cluster.url(name), autocommit=True) as conn:
        conn.execute(f"SET ROLE {roles.owner}")
        conn.execute(SAMPLE_SQL.read_text().encode())
        conn.execute(EXTRA.format(reader=roles.reader, owner=roles.owner).encode())
    yield name
    cluster.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _settings(cluster: ThrowawayCluster, roles: Roles, dbname: str, backups: Path) -> object:
    url = f"postgresql://{roles.pgkeep}:{roles.password}@127.0.0.1:{cluster.port}/{dbname}"
    return load_settings(
        database_url=url,
        jwt_secret=SECRET,
        backup_dir=backups,
        pg_bin_dir=cluster.bin_dir,
        schedule_database=roles.pgkeep,
    )


@pytest.mark.parametrize("fmt", [DumpFormat.PLAIN, DumpFormat.CUSTOM])
def test_a_role_that_is_no_superuser_backs_up_test_restores_and_restores_identically(
    cluster: ThrowawayCluster, roles: Roles, owned: str, tmp_path: Path, fmt: DumpFormat
) -> None:
    settings = _settings(cluster, roles, owned, tmp_path / "backups")
    runtime = wiring.build(settings)  # type: ignore[arg-type]
    runtime.factory.preflight(list(runtime.specs.values()))
    service = runtime.service()
    ready = {c.name: c for c in service.readiness()}
    assert ready["restore"].ok, ready["restore"].details
    assert ready["control"].ok, ready["control"].details
    backup = service.creating.create(BackupOptions(fmt, Compression.NONE), ACTOR)
    verification = service.proving.verify(backup.name, restore=True, actor=ACTOR)
    assert verification.verified, verification.checks
    target = "lp_restored_" + secrets.token_hex(3)
    service.proving.restore(backup.name, target, actor=ACTOR)
    try:
        pg_dump = cluster.bin_dir / "pg_dump"
        assert fingerprint(cluster.url(target), pg_dump) == fingerprint(cluster.url(owned), pg_dump)
        with psycopg.connect(cluster.url(target)) as conn:
            owner = conn.execute(
                "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s", (target,)
            ).fetchone()
        assert owner == (roles.owner,)
    finally:
        cluster.execute(f'DROP DATABASE IF EXISTS "{target}" WITH (FORCE)')
    with psycopg.connect(cluster.url()) as conn:
        left = conn.execute(
            "SELECT rolname FROM pg_roles WHERE rolname LIKE 'pgkeep\\_load\\_%'"
        ).fetchall()
    assert left == []


def test_what_a_role_lacks_is_named_and_refuses_the_start_only_for_backups(
    cluster: ThrowawayCluster, roles: Roles, owned: str, tmp_path: Path
) -> None:
    cluster.execute(f"ALTER ROLE {roles.pgkeep} NOCREATEROLE")
    settings = _settings(cluster, roles, owned, tmp_path / "backups")
    runtime = wiring.build(settings)  # type: ignore[arg-type]
    runtime.factory.preflight(list(runtime.specs.values()))  # restores only: starts
    restore = {c.name: c for c in runtime.service().readiness()}["restore"]
    assert (restore.ok, restore.critical) == (False, False)
    assert "CREATEROLE" in restore.details
    cluster.execute(f"CREATE TABLE notes (i int); ALTER TABLE notes OWNER TO {roles.reader}", owned)
    wiring.build(settings).factory.preflight(list(runtime.specs.values()))  # type: ignore[arg-type]
    cluster.execute(f"REVOKE pg_read_all_data FROM {roles.pgkeep}")
    with pytest.raises(ConfigError, match="cannot read every table") as refused:
        wiring.build(settings).factory.preflight(list(runtime.specs.values()))  # type: ignore[arg-type]
    assert f"GRANT pg_read_all_data TO {roles.pgkeep}" in refused.value.details
    cluster.execute(f"ALTER DATABASE {roles.pgkeep} OWNER TO {roles.reader}")
    cluster.execute("DROP SCHEMA IF EXISTS pgkeep CASCADE", roles.pgkeep)
    with pytest.raises(ConfigError, match="refuses pgkeep's tables"):
        wiring.build(settings).factory.preflight([])  # type: ignore[arg-type]


def test_a_role_that_is_no_superuser_restores_one_table(
    cluster: ThrowawayCluster, roles: Roles, owned: str, tmp_path: Path
) -> None:
    """A table-level restore trims staging in pgkeep's session: the owners' objects are
    dropped through its membership in them; the superuser's extension a kept column uses
    stays."""
    settings = _settings(cluster, roles, owned, tmp_path / "backups")
    service = wiring.build(settings).service()  # type: ignore[arg-type]
    backup = service.creating.create(BackupOptions(DumpFormat.CUSTOM, Compression.NONE), ACTOR)
    target = "lp_table_" + secrets.token_hex(3)
    chosen = Selection(tables=("sales.orders", "public.purchase"))
    try:
        result = service.proving.restore(backup.name, target, actor=ACTOR, selection=chosen)
        assert [(t.table, t.actual) for t in result.tables] == [
            ("public.purchase", 5000),
            ("sales.orders", 200),
        ]
        assert {k.references for k in result.dropped_foreign_keys} == {
            "public.customer",
            "public.product",
        }
        with psycopg.connect(cluster.url(target)) as conn:
            assert set(catalog.row_counts(conn)) == {"public.purchase", "sales.orders"}
            found = conn.execute("SELECT extname FROM pg_extension WHERE extname = 'hstore'")
            assert found.fetchall() == [("hstore",)]
    finally:
        cluster.execute(f'DROP DATABASE IF EXISTS "{target}" WITH (FORCE)')
