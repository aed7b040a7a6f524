"""What an imported dump may hold: every statement one pg_dump writes (the loader runs them),
and for pgkeep's own session only settings, extensions and owners in pg_dump's own form."""

from __future__ import annotations

import pytest

from pgkeep.core import import_rules, sqlscan


def _statement(text: str) -> sqlscan.Statement:
    found: list[sqlscan.Statement] = []
    scanner = sqlscan.Scanner(on_statement=found.append)
    scanner.feed(text.encode())
    scanner.finish()
    [statement] = found
    return statement


@pytest.mark.parametrize(
    ("statement", "refused"),
    [
        # What pg_dump writes: nothing refused (the loader runs it, as no superuser).
        ("SET statement_timeout = 0;", ""),
        ("SET default_tablespace = '';", ""),
        ("SET default_table_access_method = heap;", ""),
        ("SET default_with_oids = false;", ""),
        ("SET row_security = off;", ""),
        ("SET transaction_timeout = 0;", ""),
        ("SELECT pg_catalog.set_config('search_path', '', false);", ""),
        ("SELECT pg_catalog.setval('public.s', 3, true);", ""),
        ("SELECT pg_catalog.lo_create('16446');", ""),
        ("SELECT pg_catalog.lo_open('16446', 131072);", ""),
        ("SELECT pg_catalog.lowrite(0, '\\x00');", ""),
        ("SELECT pg_catalog.lo_close(0);", ""),
        ("SELECT * FROM pg_catalog.pg_restore_relation_stats('relation', 't');", "a SELECT"),
        ("SELECT pg_catalog.pg_restore_relation_stats('relation', 't');", ""),
        ("SELECT pg_catalog.pg_restore_attribute_stats('relation', 't');", ""),
        ("CREATE TABLE public.t (a integer);", ""),
        ("CREATE TABLE public.x AS SELECT 1;", ""),  # the loader runs it, as itself
        ("CREATE MATERIALIZED VIEW public.v AS SELECT 1 WITH NO DATA;", ""),
        ("REFRESH MATERIALIZED VIEW public.v;", ""),
        ("ALTER TABLE public.t OWNER TO app;", ""),
        ("ALTER TABLE public.t ADD CONSTRAINT c CHECK (public.f(a));", ""),
        ("ALTER SEQUENCE public.s OWNED BY public.t.a;", ""),
        ("ALTER DOMAIN public.d ADD CONSTRAINT c CHECK (VALUE > 0);", ""),
        ("COMMENT ON TABLE public.t IS 'x';", ""),
        ("GRANT SELECT ON TABLE public.t TO reader;", ""),
        ("REVOKE ALL ON SCHEMA public FROM PUBLIC;", ""),
        ("SECURITY LABEL FOR x ON TABLE public.t IS 'y';", ""),
        ("DROP TABLE IF EXISTS public.t;", ""),  # pg_dump --clean
        ("COPY public.t (a) FROM stdin;", ""),
        ("INSERT INTO public.t VALUES (1);", ""),  # pg_dump --inserts
        ("CREATE TABLE public.role (a integer);", ""),  # a role word, as a name
        # Anything else is named.
        ("SET ROLE postgres;", "a SET of another setting"),
        ("SET SESSION AUTHORIZATION postgres;", "a SET of another setting"),
        ("SET;", "a SET of another setting"),
        ("SELECT public.setval('x', 1);", "a SELECT"),
        ("SELECT pg_catalog.pg_read_file('/etc/passwd');", "a SELECT"),
        ("SELECT;", "a SELECT"),
        ("SELECT pg_catalog;", "a SELECT"),
        ("SELECT setval('x', 1);", "a SELECT"),
        ("REFRESH public.v;", "a REFRESH"),
        ("COPY (SELECT 1) TO PROGRAM 'id';", "a COPY"),
        ("COPY public.t FROM PROGRAM 'id';", "a COPY"),
        ("COPY public.t TO stdin;", "a COPY"),
        ("INSERT public.t VALUES (1);", "an INSERT"),
        ("DO $$ BEGIN PERFORM 1; END $$;", "DO"),
        ("CALL public.p();", "CALL"),
        ("'x';", "a statement"),
        ("CREATE ROLE planted SUPERUSER LOGIN;", "CREATE ROLE"),
        ("CREATE USER planted;", "CREATE USER"),
        ("CREATE GROUP planted;", "CREATE GROUP"),
        ("ALTER ROLE app SUPERUSER;", "ALTER ROLE"),
        ("ALTER USER app SUPERUSER;", "ALTER USER"),
        ("ALTER DATABASE app SET search_path = public;", "ALTER DATABASE"),
        ("ALTER SYSTEM SET shared_preload_libraries = 'x';", "ALTER SYSTEM"),
        ("CREATE TABLESPACE t LOCATION '/tmp';", "CREATE TABLESPACE"),
        ("DROP DATABASE postgres;", "DROP DATABASE"),
        ("DROP ROLE postgres;", "DROP ROLE"),
        ("GRANT pg_execute_server_program TO app;", "a GRANT of a role"),
        ("REVOKE app FROM reader;", "a REVOKE of a role"),
    ],
)
def test_what_an_imported_dump_may_hold(statement: str, refused: str) -> None:
    assert import_rules.refusal(_statement(statement)) == refused


@pytest.mark.parametrize(
    ("statement", "refused"),
    [
        ("SET statement_timeout = 0;", ""),
        ("SET client_encoding = 'UTF8';", ""),
        ("SELECT pg_catalog.set_config('search_path', '', false);", ""),
        ("CREATE EXTENSION IF NOT EXISTS hstore WITH SCHEMA public;", ""),
        ('CREATE EXTENSION IF NOT EXISTS "uuid-ossp" WITH SCHEMA public;', ""),
        ("CREATE EXTENSION IF NOT EXISTS plpgsql;", ""),
        ("COMMENT ON EXTENSION hstore IS 'data type for storing sets of (key, value) pairs';", ""),
        ("COMMENT ON EXTENSION hstore IS 'it''s';", ""),
        # Each whole, nothing around it.
        ("SET ROLE postgres;", "a SET of another setting"),
        ("SELECT pg_catalog.set_config('search_path', 'public', false);", "SELECT (only settings "),
        ("SELECT pg_catalog.set_config('search_path', '', false); ", ""),
        ("CREATE EXTENSION hstore;", "CREATE (only settings "),
        ("CREATE EXTENSION IF NOT EXISTS hstore WITH SCHEMA public VERSION '1';", "CREATE (only"),
        ("CREATE EXTENSION IF NOT EXISTS hstore SCHEMA public;", "CREATE (only"),
        ("COMMENT ON EXTENSION hstore IS 'x' || public.f();", "COMMENT (only"),
        ("COMMENT ON TABLE public.t IS 'x';", "COMMENT (only"),
        ("CREATE TABLE public.t (a int);", "CREATE (only"),
        ("GRANT SELECT ON TABLE public.t TO PUBLIC;", "GRANT (only"),
        ("ALTER TABLE public.t OWNER TO postgres;", "ALTER (only"),
        ("'x';", "a statement (only settings and extensions)"),
    ],
)
def test_what_an_imported_dump_may_have_pgkeeps_session_run(statement: str, refused: str) -> None:
    assert import_rules.admin_refusal(_statement(statement)).startswith(refused)
    assert (import_rules.admin_refusal(_statement(statement)) == "") is (refused == "")


def test_a_statement_over_lines_or_long_is_never_pgkeeps_to_run() -> None:
    """The scanner keeps no text of a statement over two lines: nothing to match, refused."""
    split = "CREATE EXTENSION IF NOT EXISTS hstore\nWITH SCHEMA public;"
    assert _statement(split).text == ""
    assert import_rules.admin_refusal(_statement(split)) == (
        "CREATE (only settings and extensions)"
    )
    owner = "ALTER TABLE public.t\nOWNER TO app;"
    assert import_rules.owner_statement_refusal(_statement(owner)) == (
        "an ALTER … OWNER TO of another form than pg_dump's"
    )


@pytest.mark.parametrize(
    ("statement", "allowed"),
    [
        ("ALTER TABLE public.t OWNER TO app;", True),
        ('ALTER TABLE "Odd"."t""x" OWNER TO "Some One";', True),
        ("ALTER TABLE t OWNER TO app;", True),
        ("ALTER FUNCTION public.f(integer, text) OWNER TO app;", True),
        ('ALTER FUNCTION public.f("char") OWNER TO app;', True),
        ("ALTER FOREIGN DATA WRAPPER w OWNER TO app;", True),
        ("ALTER TEXT SEARCH CONFIGURATION public.c OWNER TO app;", True),
        ("ALTER OPERATOR CLASS public.c USING btree OWNER TO app;", True),
        ("ALTER LARGE OBJECT 16446 OWNER TO app;", True),
        ("ALTER A B C D public.t OWNER TO app;", False),  # four words of kind
        ("ALTER TABLE public.t ADD CONSTRAINT c CHECK (public.evil() > 0), OWNER TO app;", False),
        ("ALTER FUNCTION public.f(integer) SET search_path = public OWNER TO app;", False),
        ("ALTER FUNCTION public.f(public.evil()) OWNER TO app;", False),
        ("ALTER TABLE public.t OWNER TO app, public.evil();", False),
        ("ALTER TABLE a.b.c OWNER TO app;", False),
        ("ALTER LARGE OBJECT 1.5 OWNER TO app;", False),
        ("ALTER table public.t OWNER TO app;", False),
    ],
)
def test_owner_statements_are_pg_dumps_own_form_whole(statement: str, allowed: bool) -> None:
    refused = import_rules.owner_statement_refusal(_statement(statement))
    assert (refused == "") is allowed
    if not allowed:
        assert refused == "an ALTER … OWNER TO of another form than pg_dump's"
