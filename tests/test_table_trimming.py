"""Trimming a table-level restore on a small database built for it: no event trigger fires
on the drops, and a quoted schema keeps its views and routines, not what it references."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from pgkeep.core.models import Backup, BackupOptions, DumpFormat
from pgkeep.core.selecting import Selection
from pgkeep.core.service import BackupService
from pgkeep.throwaway.cluster import ThrowawayCluster
from tests.conftest import ACTOR, core_service


@pytest.fixture
def into(cluster: ThrowawayCluster, request: pytest.FixtureRequest) -> Iterator[str]:
    name = "trimmed_" + request.node.name[-40:]
    yield name
    cluster.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


SMALL = """
CREATE ROLE tables_mallory NOLOGIN;
CREATE TABLE public.kept (id int PRIMARY KEY);
INSERT INTO public.kept SELECT pg_catalog.generate_series(1, 3);
CREATE TABLE public.other (id int);
CREATE FUNCTION public.spy() RETURNS event_trigger LANGUAGE plpgsql
  AS $$ BEGIN RAISE EXCEPTION 'owner code ran as %', current_user; END $$;
ALTER FUNCTION public.spy() OWNER TO tables_mallory;
CREATE EVENT TRIGGER spy ON sql_drop EXECUTE FUNCTION public.spy();
CREATE SCHEMA "Sales Data";
CREATE TABLE "Sales Data".orders (id int PRIMARY KEY, kept_id int REFERENCES public.kept);
INSERT INTO "Sales Data".orders VALUES (1, 1), (2, 2);
CREATE VIEW "Sales Data".recent AS SELECT id FROM "Sales Data".orders;
CREATE FUNCTION "Sales Data".total() RETURNS bigint LANGUAGE sql AS 'SELECT 1';
CREATE TABLE public.parent_ref (id int PRIMARY KEY);
INSERT INTO public.parent_ref VALUES (1);
CREATE TABLE public.events (at int, ref int REFERENCES public.parent_ref) PARTITION BY RANGE (at);
CREATE TABLE public.events_1 PARTITION OF public.events FOR VALUES FROM (0) TO (10);
CREATE TABLE public.events_2 PARTITION OF public.events FOR VALUES FROM (10) TO (20);
INSERT INTO public.events VALUES (1, 1), (2, 1), (15, 1);
"""


@pytest.fixture(scope="module")
def small(
    cluster: ThrowawayCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[BackupService, Backup]]:
    """A small database with an event trigger and a quoted schema, and a plain backup."""
    url = cluster.create_database("tables_small")
    try:
        cluster.execute(SMALL, "tables_small")
        backups = tmp_path_factory.mktemp("small") / "backups"
        service = core_service(url, backups, cluster.bin_dir)
        yield service, service.creating.create(BackupOptions(DumpFormat.PLAIN), ACTOR)
    finally:
        cluster.execute('DROP DATABASE IF EXISTS "tables_small" WITH (FORCE)')
        cluster.execute("DROP ROLE IF EXISTS tables_mallory")


def test_table_restore_fires_no_event_trigger(
    small: tuple[BackupService, Backup], cluster: ThrowawayCluster, into: str
) -> None:
    """An event trigger (a superuser's, calling another role's function) would run on the
    DROPs that trim the database, as pgkeep: it is dropped first, and never fires."""
    service, backup = small
    chosen = Selection(tables=("public.kept",))
    result = service.proving.restore(backup.name, into, actor=ACTOR, selection=chosen)
    assert [(t.table, t.actual) for t in result.tables] == [("public.kept", 3)]
    with psycopg.connect(cluster.url(into), autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM pg_event_trigger").fetchone() == (0,)
        schemas = conn.execute("SELECT nspname FROM pg_namespace WHERE nspname !~ '^pg_'")
        assert {r[0] for r in schemas} == {"public", "information_schema"}


def test_table_restore_of_a_schema_keeps_its_objects_and_what_they_need(
    small: tuple[BackupService, Backup], cluster: ThrowawayCluster, into: str
) -> None:
    service, backup = small
    chosen = Selection(schemas=('"Sales Data"',))
    result = service.proving.restore(backup.name, into, actor=ACTOR, selection=chosen)
    assert [(t.table, t.actual) for t in result.tables] == [('"Sales Data".orders', 2)]
    dropped = {(k.table, k.name, k.references) for k in result.dropped_foreign_keys}
    assert dropped == {('"Sales Data".orders', "orders_kept_id_fkey", "public.kept")}
    with psycopg.connect(cluster.url(into), autocommit=True) as conn:
        kept = conn.execute(
            "SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n"
            " ON n.oid = c.relnamespace WHERE n.nspname IN ('public', 'Sales Data')"
            " AND c.relkind IN ('r', 'v') ORDER BY 1"
        ).fetchall()
        assert kept == [("orders", "r"), ("recent", "v")]
        functions = conn.execute("SELECT proname FROM pg_proc WHERE proname IN ('total', 'spy')")
        assert functions.fetchall() == [("total",)]


def test_table_restore_of_a_partition_drops_its_parents_foreign_key(
    small: tuple[BackupService, Backup], cluster: ThrowawayCluster, into: str
) -> None:
    """A foreign key declared on a partitioned table is copied to each partition; the copy
    is not followed either, and the parent's key is the one dropped and named."""
    service, backup = small
    chosen = Selection(tables=("public.events_1",))
    result = service.proving.restore(backup.name, into, actor=ACTOR, selection=chosen)
    assert [(t.table, t.actual) for t in result.tables] == [("public.events_1", 2)]
    dropped = {(k.table, k.name, k.references) for k in result.dropped_foreign_keys}
    assert dropped == {("public.events", "events_ref_fkey", "public.parent_ref")}
    with psycopg.connect(cluster.url(into), autocommit=True) as conn:
        kept = conn.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') ORDER BY 1"
        ).fetchall()
        assert kept == [("events",), ("events_1",)]
