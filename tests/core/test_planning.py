"""A plain dump's restore plan: who runs each entry, what is never sent, what an import may hold."""

from __future__ import annotations

import hashlib

import pytest

from pgkeep.core import planning, restore_plan, sqlscan
from pgkeep.core.restore_plan import ADMIN, LOADER, OWNER
from pgkeep.errors import Corrupt

PREAMBLE = (
    "SET client_encoding = 'UTF8';\nSELECT pg_catalog.set_config('search_path', '', false);\n"
)


def _entry(line: str, body: str) -> str:
    return f"\n--\n-- TOC entry 1 (class 1 OID 1)\n-- {line}\n--\n\n{body}\n"


DUMP = (
    "--\n-- PostgreSQL database dump\n--\n\n\\restrict K1\n\n"
    + PREAMBLE
    + _entry(
        "Name: t; Type: TABLE; Schema: public; Owner: app",
        "CREATE TABLE public.t (a int);\n\nALTER TABLE public.t OWNER TO app;",
    )
    + "SET default_tablespace = '';\n"
    + _entry(
        "Data for Name: t; Type: TABLE DATA; Schema: public; Owner: app",
        "COPY public.t (a) FROM stdin;\n1\n2\n\\.\n",
    )
    + _entry(
        "Name: s; Type: SEQUENCE SET; Schema: public; Owner: app",
        "SELECT pg_catalog.setval('public.s', 3, true);",
    )
    + _entry(
        "Name: t t_check; Type: CHECK CONSTRAINT; Schema: public; Owner: app",
        "ALTER TABLE public.t ADD CONSTRAINT t_check CHECK (a > 0);",
    )
    + _entry("Name: t_i; Type: INDEX; Schema: public; Owner: app", "CREATE INDEX t_i ON t (a);")
    + _entry(
        "Name: TABLE t; Type: ACL; Schema: public; Owner: app",
        "GRANT SELECT ON TABLE public.t TO PUBLIC;",
    )
    + "\n--\n-- PostgreSQL database dump complete\n--\n\n\\unrestrict K1\n\n"
)


def _plan(text: str, size: int = 11, *, strict: bool = False) -> tuple[restore_plan.Plan, str]:
    planner = planning.Planner(strict=strict)
    data = text.encode()
    for i in range(0, len(data), size):
        planner.feed(data[i : i + size])
    return planner.finish(), planner.opening_key or ""


def _sent(text: str, run: restore_plan.Run) -> bytes:
    data = text.encode()
    out, at = b"", run.start
    for start, end in (*run.skips, (run.end, run.end)):
        out += data[at:start]
        at = end
    return out


def test_each_entry_runs_as_its_role_in_the_dumps_order() -> None:
    plan, key = _plan(DUMP)
    assert key == "K1"
    roles = [(r.role, r.owner) for r in plan.runs]
    assert roles == [
        (ADMIN, ""),  # pg_dump's preamble
        (OWNER, "app"),
        (LOADER, "app"),
        (ADMIN, ""),
        (LOADER, "app"),
        (OWNER, "app"),
        (ADMIN, ""),
    ]
    data = DUMP.encode()
    bodies = [data[r.start : r.end] for r in plan.runs]
    assert b"CREATE TABLE public.t" in bodies[1]
    assert b"COPY public.t" in bodies[2]
    assert b"setval" in bodies[3]
    assert b"ADD CONSTRAINT t_check" in bodies[4]
    assert b"CREATE INDEX" in bodies[5]
    assert b"GRANT SELECT" in bodies[6]


def test_an_owners_run_notes_its_owner_statements_for_the_admin() -> None:
    plan, _ = _plan(DUMP)
    data = DUMP.encode()
    owned = [data[a:b] for run in plan.runs for a, b in run.owned]
    assert owned == [b"ALTER TABLE public.t OWNER TO app;"]
    assert plan.runs[1].owned
    assert not plan.imported


def test_the_dumps_own_restrict_lines_are_never_sent() -> None:
    plan, _ = _plan(DUMP)
    sent = b"".join(_sent(DUMP, run) for run in plan.runs)
    assert b"\\restrict" not in sent
    assert b"\\unrestrict" not in sent


def test_an_unrestrict_that_is_not_the_last_line_is_sent_and_stops_psql() -> None:
    text = DUMP.replace("\\unrestrict K1\n\n", "\\unrestrict K1\n\\! touch /tmp/x\nSELECT 1;\n")
    plan, _ = _plan(text)
    sent = b"".join(_sent(text, run) for run in plan.runs)
    assert b"\\unrestrict K1" in sent
    assert b"\\! touch" in sent


def test_lines_before_the_restrict_line_are_no_opening() -> None:
    """Only a `\\restrict` that comes first (after comments) is the dump's own."""
    text = DUMP.replace("\\restrict K1\n", "\\! id\n\\restrict K1\n", 1)
    plan, key = _plan(text)
    assert key == ""
    sent = b"".join(_sent(text, run) for run in plan.runs)
    assert b"\\! id" in sent  # psql stops at the first
    assert b"\\restrict K1" in sent


def test_every_run_carries_the_sha256_of_its_bytes() -> None:
    plan, _ = _plan(DUMP)
    for run in plan.runs:
        assert run.sha256 == hashlib.sha256(_sent(DUMP, run)).hexdigest()


def test_every_run_after_the_first_gets_the_preamble_and_the_settings_in_effect() -> None:
    plan, _ = _plan(DUMP)
    assert plan.preamble.endswith(PREAMBLE + "\n")
    assert "\\restrict" not in plan.preamble
    assert plan.runs[0].state == ()
    assert plan.runs[2].state == ("SET default_tablespace = '';",)


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64, 100_000])
def test_the_plan_is_the_same_however_the_bytes_arrive(size: int) -> None:
    assert _plan(DUMP, size) == _plan(DUMP, 13)


@pytest.mark.parametrize(
    ("line", "role"),
    [
        ("-- Data for Name: t; Type: TABLE DATA; Schema: public; Owner: app", (LOADER, "app")),
        (
            "-- Data for Name: 16446; Type: BLOBS; Schema: -; Owner: postgres",
            (LOADER, "postgres"),
        ),
        ("-- Name: t c; Type: CHECK CONSTRAINT; Schema: public; Owner: app", (LOADER, "app")),
        # A name holding another type: the CHECK CONSTRAINT anywhere wins.
        (
            "-- Name: x; Type: CHECK CONSTRAINT; Schema: y; Type: INDEX; Schema: p; Owner: a",
            (LOADER, "a"),
        ),
        ("-- Name: s; Type: SEQUENCE SET; Schema: public; Owner: app", (ADMIN, "")),
        ("-- Name: 16446; Type: BLOB METADATA; Schema: -; Owner: postgres", (ADMIN, "")),
        (
            "-- Name: x; Type: TABLE DATA; Schema: y; Type: SEQUENCE SET; Schema: p; Owner: a",
            (LOADER, "a"),
        ),
        ("-- Name: t; Type: TABLE; Schema: public; Owner: app", (OWNER, "app")),
        # Not plainly an entry's header (no owner, fields out of order, a `;` in a name):
        # the loader's.
        ("-- Name: t; Type: TABLE; Schema: public", (LOADER, "")),
        ("-- Name: t; Schema: public; Type: TABLE; Owner: app", (LOADER, "app")),
        ("-- Name: a;b; Type: SEQUENCE SET; Schema: public; Owner: app", (LOADER, "app")),
        ("-- Name: s; Type: SEQUENCE SET; Schema: a;b; Owner: app", (LOADER, "app")),
        ("-- Name: t_i; Type: INDEX; Schema: public; Owner: app", (OWNER, "app")),
        ("-- Name: v; Type: VIEW; Schema: public; Owner: postgres", (OWNER, "postgres")),
        ("-- Name: TABLE t; Type: ACL; Schema: public; Owner: app", (ADMIN, "")),
        ("-- Name: plpgsql; Type: EXTENSION; Schema: -; Owner: -", (ADMIN, "")),
        # What has no owner at all: pg_dump writes `Owner: -`, as it does for a role named "-".
        ("-- Name: CAST (a AS b); Type: CAST; Schema: -; Owner: -", (ADMIN, "")),
        ("-- Name: myam; Type: ACCESS METHOD; Schema: -; Owner: -", (ADMIN, "")),
        ("-- Name: TRANSFORM FOR t LANGUAGE l; Type: TRANSFORM; Schema: -; Owner: -", (ADMIN, "")),
        ("-- Name: v; Type: VIEW; Schema: public; Owner: -", (OWNER, "-")),
        ("-- Name: d; Type: DOMAIN; Schema: public; Owner: -", (OWNER, "-")),
        ("-- Name: CAST (a AS b); Type: CAST; Schema: -; Owner: app", (OWNER, "app")),
        ("-- Name: EXTENSION hstore; Type: COMMENT; Schema: -; Owner: ", (ADMIN, "")),
        # A name that says it is an ACL, or another owner: not plainly one, so the loader's,
        # for the owner named last (pg_dump writes the owner after every name).
        (
            "-- Name: x; Type: ACL; Schema: p; Type: VIEW; Schema: public; Owner: app",
            (LOADER, "app"),
        ),
        (
            "-- Name: x; Owner: postgres; Type: VIEW; Schema: public; Owner: app",
            (LOADER, "app"),
        ),
    ],
)
def test_who_runs_an_entry(line: str, role: tuple[str, str]) -> None:
    header = sqlscan.Header(0, line, line.startswith("-- Data for "))
    assert restore_plan.role_of(header) == role


@pytest.mark.parametrize(
    ("section", "entry", "role"),
    [
        ("data", "TABLE DATA public t app", LOADER),
        ("data", "BLOBS - 16446 postgres", LOADER),
        ("data", "SEQUENCE SET public s app", ADMIN),
        ("data", "BLOB METADATA - 16446 postgres", ADMIN),
        ("data", "STATISTICS DATA public t app", ADMIN),
        ("data", "TABLE DATA public SEQUENCE SET app", LOADER),
    ],
)
def test_who_runs_an_archives_entry(section: str, entry: str, role: str) -> None:
    owner = entry.rsplit(" ", 1)[-1] if role == LOADER else ""
    assert restore_plan.archive_role(section, entry) == (role, owner)
    assert restore_plan.archive_role(section, entry, imported=True) == (LOADER, "")


@pytest.mark.parametrize(
    "statement",
    [
        "COPY (SELECT 1) TO PROGRAM 'id';",
        "DO $$ BEGIN PERFORM 1; END $$;",
        "SELECT public.evil();",
        "SET ROLE postgres;",
        "SET SESSION AUTHORIZATION postgres;",
        "CALL public.p();",
        "CREATE ROLE planted SUPERUSER LOGIN;",
        "ALTER ROLE app PASSWORD 'x';",
        "ALTER DATABASE app SET search_path = public;",
    ],
)
def test_an_import_holds_only_what_pg_dump_writes(statement: str) -> None:
    text = DUMP.replace("CREATE TABLE public.t (a int);", statement)
    with pytest.raises(Corrupt, match="not imported"):
        _plan(text, strict=True)
    _plan(text)  # made by pgkeep's own pg_dump: planned, nothing refused


EXTENSION = _entry(
    "Name: hstore; Type: EXTENSION; Schema: -; Owner: -",
    "CREATE EXTENSION IF NOT EXISTS hstore WITH SCHEMA public;",
)


@pytest.mark.parametrize(
    "statement",
    [
        "CREATE FUNCTION public.x() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$;",
        "REFRESH MATERIALIZED VIEW public.v;",
        "GRANT pg_execute_server_program TO app;",
        "GRANT ALL ON FUNCTION pg_catalog.lo_export(oid, text) TO PUBLIC;",
        "CREATE TABLE public.x (a int);",
        "SELECT pg_catalog.setval('public.s', public.evil(), true);",
        "SELECT pg_catalog.set_config('search_path', public.evil()::text, false);",
        "ALTER TABLE public.t OWNER TO postgres;",
    ],
)
def test_an_import_gives_pgkeeps_session_only_settings_and_extensions(statement: str) -> None:
    """Where an imported dump's header says the admin runs it (an extension, or the lines
    before any header), only pg_dump's own forms of settings and extensions pass, whole."""
    text = DUMP.replace("\\unrestrict K1", EXTENSION + "\\unrestrict K1")
    _plan(text, strict=True)
    planted = text.replace("CREATE EXTENSION IF NOT EXISTS hstore WITH SCHEMA public;", statement)
    with pytest.raises(Corrupt, match="in pgkeep's own session; not imported"):
        _plan(planted, strict=True)
    headless = "--\n-- PostgreSQL database dump\n--\n\n" + PREAMBLE + statement + "\n"
    with pytest.raises(Corrupt, match="in pgkeep's own session; not imported"):
        _plan(headless, strict=True)


@pytest.mark.parametrize(
    "statement",
    [
        "ALTER TABLE public.t ADD CONSTRAINT c CHECK (public.evil() > 0), OWNER TO postgres;",
        "ALTER FUNCTION public.f(integer) SET search_path = public OWNER TO postgres;",
        "ALTER TABLE public.t OWNER TO postgres; ",
    ],
)
def test_an_imports_owner_statements_are_pg_dumps_own_form_whole(statement: str) -> None:
    """The admin runs an import's `ALTER … OWNER TO` statements at the end: any other form
    (a second subcommand, a function's setting) is refused at import."""
    text = DUMP.replace("ALTER TABLE public.t OWNER TO app;", statement.strip())
    if statement.endswith(" "):
        _plan(text, strict=True)  # the form itself, whitespace around it aside
        return
    with pytest.raises(Corrupt, match="another form than pg_dump's"):
        _plan(text, strict=True)


def test_an_import_may_hold_what_pg_dump_writes() -> None:
    text = DUMP.replace(
        "CREATE TABLE public.t (a int);",
        "CREATE MATERIALIZED VIEW public.v AS SELECT 1 WITH NO DATA;\n"
        "ALTER TABLE public.t OWNER TO app;\nGRANT SELECT ON public.t TO reader;",
    )
    plan, _ = _plan(text, strict=True)
    assert plan.imported
    assert OWNER not in {r.role for r in plan.runs}  # every owner's entry is the loader's


def test_an_import_with_a_psql_command_is_refused() -> None:
    text = DUMP.replace("\\unrestrict K1\n\n", "\\unrestrict K1\n\\! touch /tmp/x\n")
    with pytest.raises(Corrupt, match="psql command"):
        _plan(text, strict=True)


TABLESPACES = DUMP.replace(
    "CREATE INDEX t_i ON t (a);", "SET default_tablespace = fast;\nCREATE INDEX t_i ON t (a);"
)


@pytest.mark.parametrize("size", [1, 7, 4096, len(TABLESPACES)])
def test_each_run_gets_the_settings_in_effect_where_it_starts_however_it_is_fed(
    size: int,
) -> None:
    """A later entry's SET is no run's before it, even when one chunk holds them all."""
    plan, _ = _plan(TABLESPACES, size)
    assert plan == _plan(TABLESPACES, 1)[0]
    # The preamble's run and the table's run start before the dump's first SET.
    empty, fast = ("SET default_tablespace = '';",), ("SET default_tablespace = fast;",)
    assert [r.state for r in plan.runs] == [(), (), empty, empty, empty, empty, fast]


def test_only_comments_may_come_before_the_dumps_own_restrict_line() -> None:
    """A statement first: the `\\restrict` line after it is no opening, and is sent (psql,
    restricted by pgkeep's own key, stops there)."""
    text = DUMP.replace("\\restrict K1\n", "SELECT 1;\n\\restrict K1\n", 1)
    plan, key = _plan(text)
    assert key == ""
    sent = b"".join(_sent(text, run) for run in plan.runs)
    assert b"\\restrict K1" in sent
    assert _plan(DUMP.replace("--\n-- PostgreSQL database dump\n--\n\n", "", 1))[1] == "K1"


def test_the_preamble_is_what_comes_before_the_first_entry_less_the_restrict_line() -> None:
    planner = planning.Planner()
    planner.feed(DUMP.encode())
    plan = planner.finish()
    before_first_entry = DUMP[: DUMP.index("\n--\n-- TOC entry") + 1]
    assert plan.preamble == before_first_entry.replace("\\restrict K1\n", "")
    assert plan.size == len(DUMP.encode())
    assert planner.opening_key == "K1"


def test_a_dump_without_a_restrict_line_has_no_opening_key() -> None:
    planner = planning.Planner()
    planner.feed(DUMP.replace("\\restrict K1\n", "").encode())
    planner.finish()
    assert planner.opening_key is None


def test_consecutive_entries_of_one_role_are_one_run() -> None:
    text = DUMP.replace(
        "CREATE INDEX t_i ON t (a);",
        "CREATE INDEX t_i ON t (a);\n"
        + _entry("Name: t_j; Type: INDEX; Schema: public; Owner: app", "CREATE INDEX t_j ON t;")
        + _entry("Name: u; Type: TABLE DATA; Schema: public; Owner: app", "SELECT 1;")
        + _entry("Data for Name: u; Type: TABLE DATA; Schema: public; Owner: app", "SELECT 2;")
        + _entry("Data for Name: v; Type: TABLE DATA; Schema: public; Owner: app", "SELECT 3;"),
    )
    plan, _ = _plan(text)
    assert [(r.role, r.owner) for r in plan.runs] == [
        (ADMIN, ""),
        (OWNER, "app"),
        (LOADER, "app"),  # the table's rows
        (ADMIN, ""),  # the sequence's value
        (LOADER, "app"),  # the CHECK constraint
        (OWNER, "app"),  # both indexes: one run
        (LOADER, "app"),  # a TABLE DATA header without "Data for", then two with: one run
        (ADMIN, ""),  # the grant
    ]


def test_only_set_statements_of_the_session_settings_are_kept_as_state() -> None:
    text = DUMP.replace(
        "SET default_tablespace = '';\n",
        "SET default_tablespace = '';\nSELECT default_table_access_method;\nSET;\n"
        "SET default_with_oids = false;\nSET lock_timeout = 0;\n",
    )
    plan, _ = _plan(text)
    assert plan.runs[2].state == (
        "SET default_tablespace = '';",
        "SET default_with_oids = false;",
    )


def test_a_dump_with_nothing_in_it_is_refused() -> None:
    with pytest.raises(Corrupt, match=r"^the plain dump is empty$"):
        _plan("")


def test_a_dump_psql_could_not_read_is_refused_saying_why(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(Corrupt) as at_the_end:
        _plan(DUMP + "SELECT 'unended;\n")
    assert at_the_end.value.message == (
        "the plain dump cannot be read as psql would: the dump ends inside '"
    )
    monkeypatch.setattr(sqlscan, "MAX_LINE", 100)
    with pytest.raises(Corrupt) as too_long:
        _plan(DUMP + "SELECT '" + "x" * 200)
    assert too_long.value.message == (
        "the plain dump cannot be read as psql would: a line of more than 100 bytes"
    )


def test_an_import_refusal_says_where_and_why() -> None:
    text = DUMP.replace("CREATE TABLE public.t (a int);", "SELECT public.evil();")
    with pytest.raises(Corrupt) as caught:
        _plan(text, strict=True)
    assert caught.value.message == (
        "the dump runs a SELECT where pg_dump writes none; not imported"
    )
    assert caught.value.details == (
        f"at byte {text.index('SELECT public.evil')}: an imported dump may hold only what "
        "pg_dump writes, and pgkeep's own session runs only its grants, comments, "
        "extensions and owners"
    )
    command = "\\! " + "x" * 60
    with pytest.raises(Corrupt) as meta:
        _plan(DUMP.replace("\\unrestrict K1\n", command + "\n"), strict=True)
    assert meta.value.message == f"the dump holds a psql command ({command[:40]!a}); not imported"
    assert meta.value.details == "pgkeep never lets psql run commands from a dump"
