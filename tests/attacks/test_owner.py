"""The owner of a backed-up database, an ordinary role, attacks pgkeep: none of their code runs
with pgkeep's rights.

Seen on the previous main: an overload `public.format(text, name, name)` ran as pgkeep's role
on every create, and CHECK constraints, domain checks and generated columns ran as the
superuser on every (test) restore, each writing through `COPY … TO PROGRAM` as the server's
OS user. Here the owner plants every trojan below (one line each: the next idea is one more
line) and pgkeep creates, test-restores and restores their database, plain and custom; a
trojan that runs as anyone but the owner or pgkeep's loader raises (so the action fails) and,
as a superuser, first writes a marker file through the server's shell.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from pgkeep.core.models import BackupOptions, Compression, DumpFormat
from pgkeep.errors import Corrupt, RestoreFailed
from pgkeep.postgres import catalog, server
from pgkeep.postgres.connection import Connection
from pgkeep.throwaway.cluster import ThrowawayCluster
from tests.conftest import ACTOR, core_service

OWNER = "trojan_owner"
# Runs as the owner (setting up, and in the source) and as pgkeep's loader; anyone else who
# runs it has been lent the owner's code: as a superuser it writes the marker through the
# server's shell, and it always raises.
TROJAN = """
CREATE FUNCTION public.trojan(what text) RETURNS boolean LANGUAGE plpgsql VOLATILE AS $f$
BEGIN
  IF current_user = '{owner}' OR current_user LIKE 'pgkeep\\_load\\_%' THEN RETURN true; END IF;
  IF (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = current_user) THEN
    EXECUTE pg_catalog.format('COPY (SELECT 1) TO PROGRAM %L',
                              'touch {markers}/' || what || '-' || current_user);
  END IF;
  RAISE EXCEPTION 'trojan % ran as %', what, current_user;
END $f$;
CREATE FUNCTION public.trojan_int(what text, x integer) RETURNS integer
  LANGUAGE plpgsql IMMUTABLE AS $f$ BEGIN PERFORM public.trojan(what); RETURN x * 2; END $f$;
"""
# Overloads of every function pgkeep's own SQL calls, in signatures that match better than
# pg_catalog's where the search path would let them (each a line).
OVERLOADS = [
    "CREATE FUNCTION public.format(text, name, name) RETURNS text"
    " LANGUAGE sql AS $$ SELECT public.trojan('format')::text $$",
    "CREATE FUNCTION public.pg_table_size(oid) RETURNS bigint"
    " LANGUAGE sql AS $$ SELECT public.trojan_int('pg_table_size', 1)::bigint $$",
    "CREATE FUNCTION public.pg_database_size(text) RETURNS bigint"
    " LANGUAGE sql AS $$ SELECT public.trojan_int('pg_database_size', 1)::bigint $$",
    "CREATE FUNCTION public.current_database(integer DEFAULT 0) RETURNS name"
    " LANGUAGE sql AS $$ SELECT public.trojan('current_database')::text::name $$",
    "CREATE FUNCTION public.current_setting(name) RETURNS text"
    " LANGUAGE sql AS $$ SELECT public.trojan('current_setting')::text $$",
    "CREATE FUNCTION public.pg_get_userbyid(bigint) RETURNS name"
    " LANGUAGE sql AS $$ SELECT public.trojan('pg_get_userbyid')::text::name $$",
    "CREATE FUNCTION public.pg_terminate_backend(bigint) RETURNS boolean"
    " LANGUAGE sql AS $$ SELECT public.trojan('pg_terminate_backend') $$",
    "CREATE FUNCTION public.count(integer DEFAULT 0) RETURNS bigint"
    " LANGUAGE sql AS $$ SELECT public.trojan_int('count', 1)::bigint $$",
    "CREATE FUNCTION public.pg_control_system(integer DEFAULT 0) RETURNS bigint"
    " LANGUAGE sql AS $$ SELECT public.trojan_int('pg_control_system', 1)::bigint $$",
]
# What the data carries: code that runs for every row loaded, or as a restore builds things.
CONSTRAINTS = [
    "CREATE DOMAIN public.checked AS integer CHECK (public.trojan('domain'))",
    "CREATE TABLE public.rows (a integer CHECK (public.trojan('check')), b public.checked,"
    " c integer GENERATED ALWAYS AS (public.trojan_int('generated', a)) STORED,"
    " d integer DEFAULT public.trojan_int('default', 0))",
    "CREATE INDEX rows_index ON public.rows ((public.trojan_int('index', a)))",
    "CREATE TABLE public.looped (a integer)",
    "CREATE FUNCTION public.row_ok(r public.looped) RETURNS boolean LANGUAGE sql"
    " AS $$ SELECT public.trojan('separated_check') $$",
    "ALTER TABLE public.looped ADD CONSTRAINT looped_ok CHECK (public.row_ok(looped))",
    "CREATE MATERIALIZED VIEW public.viewed AS SELECT public.trojan_int('matview', 1) AS x",
    "CREATE TABLE public.guarded (a integer)",
    "CREATE POLICY everyone ON public.guarded USING (public.trojan('policy'))",
    "ALTER TABLE public.guarded ENABLE ROW LEVEL SECURITY",
    # Schema that runs the owner's code as whoever issues it (an independent review found
    # these on the plan that ran all schema in pgkeep's own session):
    # a domain array's constant is checked where the statement is read, in a view, a default;
    "CREATE VIEW public.arrayed AS SELECT '{1}'::public.checked[] AS x",
    "CREATE TABLE public.defaulted (a public.checked[] DEFAULT '{1}')",
    # a partition bound on a domain key is checked where the partition is attached;
    "CREATE TABLE public.parted (a public.checked) PARTITION BY LIST (a)",
    "CREATE TABLE public.parted_5 PARTITION OF public.parted FOR VALUES IN (5)",
    # an aggregate's initial value of a domain type, where the aggregate is made;
    "CREATE FUNCTION public.step(public.checked, integer) RETURNS public.checked"
    " LANGUAGE sql AS $$ SELECT $1 $$",
    "CREATE AGGREGATE public.folded(integer) (SFUNC = public.step, STYPE = public.checked,"
    " INITCOND = '7')",
    # an FK's check of the rows already there calls the owner's cast, as whoever adds it.
    "CREATE TYPE public.mood AS ENUM ('x')",
    "CREATE FUNCTION public.mood_int(public.mood) RETURNS integer LANGUAGE plpgsql"
    " AS $$ BEGIN PERFORM public.trojan('fk_cast'); RETURN 1; END $$",
    "CREATE CAST (public.mood AS integer) WITH FUNCTION public.mood_int(public.mood) AS IMPLICIT",
    "CREATE TABLE public.keyed (id integer PRIMARY KEY)",
    "CREATE TABLE public.referring (v public.mood REFERENCES public.keyed (id))",
    # an object given to pg_database_owner (the owner's, through their database) is still
    # the owner's code: the loader's for it, not pgkeep's.
    "CREATE VIEW public.database_owners AS SELECT '{2}'::public.checked[] AS x",
    "ALTER VIEW public.database_owners OWNER TO pg_database_owner",
    "INSERT INTO public.keyed VALUES (1)",
    "INSERT INTO public.referring VALUES ('x')",
    "INSERT INTO public.parted VALUES (5)",
    "INSERT INTO public.rows (a, b) SELECT i, i FROM generate_series(1, 50) AS i",
    "INSERT INTO public.looped SELECT generate_series(1, 10)",
    "INSERT INTO public.guarded SELECT generate_series(1, 10)",
]


@pytest.fixture
def markers(tmp_path: Path) -> Iterator[Path]:
    """Where a trojan run as a superuser leaves its marker (the server's OS user may write)."""
    where = Path("/tmp") / f"pgkeep-trojans-{secrets.token_hex(6)}"
    where.mkdir()
    where.chmod(0o777)
    yield where
    for marker in where.iterdir():
        marker.unlink()
    where.rmdir()


@pytest.fixture
def owned(cluster: ThrowawayCluster, markers: Path) -> Iterator[str]:
    """A database an ordinary role owns and filled with trojans; its URL (as pgkeep, superuser)."""
    name = "owned_" + secrets.token_hex(4)
    password = secrets.token_urlsafe(12)
    cluster.execute(
        f"DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{OWNER}') THEN"  # noqa: S608
        f" CREATE ROLE {OWNER} LOGIN; END IF; END $$"
    )
    cluster.execute(f"ALTER ROLE {OWNER} PASSWORD '{password}'")
    cluster.execute(f"CREATE DATABASE {name} OWNER {OWNER}")
    owner_url = f"postgresql://{OWNER}:{password}@127.0.0.1:{cluster.port}/{name}"
    with psycopg.connect(owner_url, autocommit=True) as conn:
        conn.execute(TROJAN.format(owner=OWNER, markers=markers).encode())
        for statement in [*OVERLOADS, *CONSTRAINTS]:
            conn.execute(statement.encode())
    yield cluster.url(name)
    cluster.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_the_trojans_run_when_pgkeep_lends_its_session(
    owned: str, markers: Path, cluster: ThrowawayCluster
) -> None:
    """The control: an unpinned superuser session that counts rows as pgkeep did runs the
    owner's `format`, and loading a row as the superuser runs their CHECK."""
    with psycopg.connect(owned, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.RaiseException, match="trojan format ran"):
            conn.execute(catalog.USER_TABLES.replace("pg_catalog.format", "format")).fetchall()
        with pytest.raises(
            psycopg.errors.RaiseException, match=r"trojan (default|check|domain|generated) ran"
        ):
            conn.execute("INSERT INTO public.rows (a, b) VALUES (1, 1)")
    assert {p.name.split("-")[0] for p in markers.iterdir()} >= {"format"}
    assert len(list(markers.iterdir())) == 2


@pytest.mark.parametrize("fmt", [DumpFormat.PLAIN, DumpFormat.CUSTOM])
def test_no_owner_code_runs_as_pgkeep_on_create_verify_or_restore(
    owned: str, markers: Path, cluster: ThrowawayCluster, tmp_path: Path, fmt: DumpFormat
) -> None:
    service = core_service(owned, tmp_path / "backups", cluster.bin_dir)
    backup = service.creating.create(BackupOptions(fmt, Compression.NONE), ACTOR)
    assert backup.manifest is not None
    assert backup.manifest.row_counts == {
        "public.defaulted": 0,
        "public.guarded": 10,
        "public.keyed": 1,
        "public.looped": 10,
        "public.parted_5": 1,
        "public.referring": 1,
        "public.rows": 50,
    }
    verification = service.proving.verify(backup.name, restore=True, actor=ACTOR)
    assert verification.verified, verification.checks
    target = "restored_" + secrets.token_hex(4)
    result = service.proving.restore(backup.name, target, actor=ACTOR)
    try:
        assert {t.table: t.actual for t in result.tables} == backup.manifest.row_counts
        with psycopg.connect(cluster.url(target)) as conn:
            owner = conn.execute(
                "SELECT pg_get_userbyid(relowner) FROM pg_class WHERE relname = 'rows'"
            ).fetchone()
            database = conn.execute(
                "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()"
            ).fetchone()
            loaders = conn.execute(
                "SELECT count(*) FROM pg_roles WHERE rolname LIKE 'pgkeep\\_load\\_%'"
            ).fetchone()
        assert owner == (OWNER,)
        assert database == (OWNER,)  # the source database's owner, as recorded
        assert loaders == (0,)
    finally:
        cluster.execute(f'DROP DATABASE IF EXISTS "{target}" WITH (FORCE)')
    assert not list(markers.iterdir())


def test_every_pgkeep_session_is_pinned_before_its_first_query(owned: str, markers: Path) -> None:
    """pgkeep's sessions see only pg_catalog (and pg_temp): the owner's better-matching
    overloads in `public` are not even candidates, qualified or not."""
    target = Connection.from_url(owned)
    with server.connect(target) as conn:
        row = conn.execute("SELECT format('%I.%I', 'a'::name, 'b'::name)").fetchone()
        assert row == ("a.b",)
        conn.execute("SET search_path = public, pg_catalog")  # as a pooler might leave it
        with pytest.raises(server.Unpinned, match="dropped its startup options"):
            server.confirm_pinned(conn)
    assert not list(markers.iterdir())


def test_a_superusers_table_checked_by_the_owners_function_is_refused(
    owned: str, cluster: ThrowawayCluster, markers: Path, tmp_path: Path
) -> None:
    """Loading it would run the owner's code on a superuser's table: refused, naming both."""
    dbname = owned.rsplit("/", 1)[1]
    cluster.execute(
        "CREATE TABLE public.kept (a integer CHECK (public.trojan('kept')));"
        f" SET ROLE {OWNER}; SELECT 1",
        dbname,
    )
    service = core_service(owned, tmp_path / "backups", cluster.bin_dir)
    backup = service.creating.create(None, ACTOR)
    with pytest.raises(RestoreFailed, match="a superuser's table checks its rows") as refused:
        service.proving.restore(backup.name, "refused_" + secrets.token_hex(3), actor=ACTOR)
    assert "public.kept calls public.trojan(text)" in refused.value.details
    assert not list(markers.iterdir())


def test_a_function_named_begin_cannot_turn_the_owners_rows_into_pgkeeps_sql(
    owned: str, cluster: ThrowawayCluster, markers: Path, tmp_path: Path
) -> None:
    """`begin` is unreserved, so pg_dump writes `CREATE FUNCTION public.begin()` unquoted and
    psql waits for its END: the next entry, rows and all, would be one statement (psql 17.10
    ran a row's text as SQL). pgkeep reads the dump as psql would, finds an entry's header
    inside a statement, and refuses the backup, naming why; nothing is stored."""
    dbname = owned.rsplit("/", 1)[1]
    with psycopg.connect(cluster.url(dbname), autocommit=True) as conn:
        conn.execute(f"SET ROLE {OWNER}")
        conn.execute(
            "CREATE FUNCTION public.begin() RETURNS integer LANGUAGE sql AS $$ SELECT 1 $$"
        )
        conn.execute("CREATE TABLE public.said (a text)")
        conn.execute(
            "INSERT INTO public.said VALUES ('; SELECT public.trojan(''begin''); END; END;')"
        )
    service = core_service(owned, tmp_path / "backups", cluster.bin_dir)
    with pytest.raises(Corrupt, match="inside an unended statement"):
        service.creating.create(BackupOptions(DumpFormat.PLAIN, Compression.NONE), ACTOR)
    assert service.catalog.list() == []
    assert not list(markers.iterdir())


OTHER = "trojan_other"
PEEK = """
CREATE FUNCTION public.peek() RETURNS boolean LANGUAGE plpgsql AS $f$
BEGIN
  BEGIN
    PERFORM 1 FROM public.secret;
    RAISE EXCEPTION 'read another owner''s table as %', current_user;
  EXCEPTION WHEN insufficient_privilege THEN NULL;
  END;
  BEGIN
    PERFORM pg_catalog.setval('public.counter', 424242);
    RAISE EXCEPTION 'set a superuser''s sequence as %', current_user;
  EXCEPTION WHEN insufficient_privilege THEN NULL;
  END;
  RETURN true;
END $f$;
CREATE TABLE public.peeking (a integer CHECK (public.peek()));
INSERT INTO public.peeking SELECT generate_series(1, 5);
"""


def test_one_owners_code_never_has_another_owners_rights(
    owned: str, cluster: ThrowawayCluster, tmp_path: Path
) -> None:
    """A database two roles own parts of: the first's CHECK, run for its rows in a restore,
    can neither read the second's table nor set a superuser's sequence (each owner's entries
    have a loader of their own, a member of that owner only, and the loader holds no rights
    on sequences). An independent review read the other owner's table and changed its
    password through the one loader that was a member of every owner."""
    dbname = owned.rsplit("/", 1)[1]
    cluster.execute(
        f"DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{OTHER}') THEN"  # noqa: S608
        f" CREATE ROLE {OTHER}; END IF; END $$"
    )
    cluster.execute(
        f"CREATE TABLE public.secret (a integer); ALTER TABLE public.secret OWNER TO {OTHER};"  # noqa: S608
        " INSERT INTO public.secret VALUES (1); CREATE SEQUENCE public.counter;",
        dbname,
    )
    with psycopg.connect(cluster.url(dbname), autocommit=True) as conn:
        conn.execute(f"SET ROLE {OWNER}")
        conn.execute(PEEK.encode())
    service = core_service(owned, tmp_path / "backups", cluster.bin_dir)
    for fmt in (DumpFormat.PLAIN, DumpFormat.CUSTOM):
        backup = service.creating.create(BackupOptions(fmt, Compression.NONE), ACTOR)
        verification = service.proving.verify(backup.name, restore=True, actor=ACTOR)
        assert verification.verified, verification.checks


DASH = """
CREATE FUNCTION public.dash_check(integer) RETURNS boolean LANGUAGE plpgsql AS $f$
BEGIN
  IF (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = current_user) THEN
    EXECUTE pg_catalog.format('COPY (SELECT 1) TO PROGRAM %L',
                              'touch {markers}/dash-' || current_user);
  END IF;
  RETURN true;
END $f$;
CREATE DOMAIN public.dashed_int AS integer CHECK (public.dash_check(VALUE));
CREATE VIEW public.dashed AS SELECT '{{1}}'::public.dashed_int[] AS x;
"""


@pytest.mark.parametrize("fmt", [DumpFormat.PLAIN, DumpFormat.CUSTOM])
def test_a_role_named_like_no_owner_has_its_code_run_as_itself(
    owned: str, cluster: ThrowawayCluster, markers: Path, tmp_path: Path, fmt: DumpFormat
) -> None:
    """pg_dump writes `Owner: -` for what has no owner (an extension, a cast) and for a role
    named "-" alike: that role's view, whose domain constant runs its check where the view is
    made, is made by a loader, never by pgkeep's own session."""
    dbname = owned.rsplit("/", 1)[1]
    cluster.execute(
        "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '-') THEN"
        ' CREATE ROLE "-"; END IF; END $$'
    )
    cluster.execute('GRANT CREATE ON SCHEMA public TO "-"', dbname)
    with psycopg.connect(cluster.url(dbname), autocommit=True) as conn:
        conn.execute('SET ROLE "-"')
        conn.execute(DASH.format(markers=markers).encode())
    assert not list(markers.iterdir())
    service = core_service(owned, tmp_path / "backups", cluster.bin_dir)
    backup = service.creating.create(BackupOptions(fmt, Compression.NONE), ACTOR)
    target = "dashed_" + secrets.token_hex(4)
    service.proving.restore(backup.name, target, actor=ACTOR)
    try:
        with psycopg.connect(cluster.url(target)) as conn:
            owner = conn.execute(
                "SELECT pg_get_userbyid(relowner) FROM pg_class WHERE relname = 'dashed'"
            ).fetchone()
        assert owner == ("-",)
    finally:
        cluster.execute(f'DROP DATABASE IF EXISTS "{target}" WITH (FORCE)')
    assert not list(markers.iterdir())
