"""The restore plan's own rules: who runs an imported dump's entries, which statements give
owners, an archive's entries, and a plan read back from its (signed) JSON."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from pgkeep.core import restore_plan, sqlscan
from pgkeep.core.restore_plan import ADMIN, LOADER, OWNER, Plan, Run


def _statement(text: str) -> sqlscan.Statement:
    found: list[sqlscan.Statement] = []
    scanner = sqlscan.Scanner(on_statement=found.append)
    scanner.feed(text.encode())
    scanner.finish()
    [statement] = found
    return statement


def _header(line: str, data: bool = False) -> sqlscan.Header:
    return sqlscan.Header(0, line, data)


@pytest.mark.parametrize(
    ("line", "data", "role"),
    [
        # Only an extension and its comment (no owner) are the admin's in an import.
        ("-- Name: hstore; Type: EXTENSION; Schema: -; Owner: -", False, ADMIN),
        ("-- Name: EXTENSION hstore; Type: COMMENT; Schema: -; Owner: ", False, ADMIN),
        # (what has no owner: its statements checked one by one, planning.py)
        ("-- Name: x; Type: CAST; Schema: -; Owner: -", False, ADMIN),
        # A role named "-" (or a dump made with --no-owner): the loader's.
        ("-- Name: EXTENSION hstore; Type: COMMENT; Schema: -; Owner: -", False, LOADER),
        # Every other entry the loader's, whoever it names and whatever role_of says.
        ("-- Name: TABLE t; Type: ACL; Schema: public; Owner: app", False, LOADER),
        ("-- Name: s; Type: SEQUENCE SET; Schema: public; Owner: app", False, LOADER),
        ("-- Name: t; Type: TABLE; Schema: public; Owner: postgres", False, LOADER),
        ("-- Name: t; Type: EXTENSION; Schema: -; Owner: -", True, LOADER),  # rows
        ("-- Name: e; Type: EXTENSION; Schema: -; Owner: app", False, ADMIN),
        ("-- Name: e; Type: EXTENSIONS; Schema: -; Owner: app", False, LOADER),
        ("-- Name: x; Type: EXTENSION; Schema: -; Type: TABLE; Schema: p; Owner: -", False, LOADER),
        ("-- Name: x; Type: EXTENSION; Schema: -; Owner: -; Owner: -", False, LOADER),
        ("-- Name: x; Type: TABLE; Schema: -; Owner: app; Schema: -; Owner: -", False, LOADER),
        ("-- Name: x; Type: COMMENT; Schema: -; Owner: a", False, LOADER),
    ],
)
def test_who_runs_an_imported_dumps_entry(line: str, data: bool, role: str) -> None:
    assert restore_plan.import_role_of(_header(line, data)) == (role, "")


def test_an_import_gives_the_admin_only_what_role_of_gives_it_too() -> None:
    """Kinds role_of gives the admin (an ACL, a sequence's value) are the loader's in an
    import; what is left to the admin there is checked statement by statement (planning)."""
    for line in (
        "-- Name: TABLE t; Type: ACL; Schema: public; Owner: app",
        "-- Name: plpgsql; Type: EXTENSION; Schema: -; Owner: -",
        "-- Name: CAST (a AS b); Type: CAST; Schema: -; Owner: -",
    ):
        assert restore_plan.role_of(_header(line)) == (ADMIN, "")
    line = "-- Name: x; Type: FUNCTION; Schema: public; Owner: app"
    assert restore_plan.role_of(_header(line)) == (OWNER, "app")
    assert restore_plan.import_role_of(_header(line)) == (LOADER, "")


@pytest.mark.parametrize(
    ("text", "owner"),
    [
        ("ALTER TABLE public.t OWNER TO app;", True),
        ("ALTER FUNCTION public.f(integer) OWNER TO app;", True),
        ('ALTER TABLE public.t OWNER TO "Odd";', True),
        ("ALTER LARGE OBJECT 16446 OWNER TO app;", True),
        ("ALTER OPERATOR CLASS public.c USING btree OWNER TO app;", True),  # owner to, then 1
        ("ALTER TABLE public.t ADD CONSTRAINT c CHECK (a > 0);", False),
        ("ALTER TABLE public.t OWNER app;", False),
        ("ALTER TABLE public.t RENAME TO owner;", False),
        ("CREATE TABLE owner (to int);", False),
        ("SELECT 'OWNER TO app';", False),
        ("COMMENT ON TABLE t IS 'OWNER TO';", False),
    ],
)
def test_which_statements_give_an_owner(text: str, owner: bool) -> None:
    assert restore_plan.is_owner_statement(_statement(text)) is owner


@pytest.mark.parametrize(
    ("section", "entry", "role"),
    [
        ("data", "SEQUENCE SET public s app", (ADMIN, "")),
        ("data", "BLOB METADATA - 16446 postgres", (ADMIN, "")),
        ("data", "STATISTICS DATA public t app", (ADMIN, "")),
        ("data", "TABLE DATA public t app", (LOADER, "app")),
        ("data", "SEQUENCE SETS public s app", (LOADER, "app")),
        ("pre-data", "SEQUENCE SET public s app", (LOADER, "app")),
        ("data", "SEQUENCE", (LOADER, "")),  # no owner to name
    ],
)
def test_who_runs_an_archives_entry(section: str, entry: str, role: tuple[str, str]) -> None:
    assert restore_plan.archive_role(section, entry) == role
    assert restore_plan.archive_role(section, entry, imported=True) == (LOADER, "")
    assert restore_plan.archive_role(section, entry, True) == (LOADER, "")


PLAN = Plan(
    "SET a = 1;\n",
    (
        Run(ADMIN, 0, 100, "ab" * 32, (), ((10, 20), (30, 30))),
        Run(
            OWNER, 100, 900, "12" * 32, ("SET default_tablespace = '';",), (), "app", ((150, 180),)
        ),
        Run(LOADER, 900, 950, "34" * 32, (), (), "app"),
        Run(ADMIN, 950, 1000, "cd" * 32, ("SET a = 2;", "SET b = 3;"), ((990, 1000),)),
    ),
    1000,
)


def test_a_plan_round_trips_through_its_json() -> None:
    document = restore_plan.to_json(PLAN)
    assert document == {
        "version": 2,
        "preamble": "SET a = 1;\n",
        "size": 1000,
        "imported": False,
        "runs": [
            {
                "as": "admin",
                "owner": "",
                "start": 0,
                "end": 100,
                "sha256": "ab" * 32,
                "state": [],
                "skip": [[10, 20], [30, 30]],
                "owned": [],
            },
            {
                "as": "owner",
                "owner": "app",
                "start": 100,
                "end": 900,
                "sha256": "12" * 32,
                "state": ["SET default_tablespace = '';"],
                "skip": [],
                "owned": [[150, 180]],
            },
            {
                "as": "loader",
                "owner": "app",
                "start": 900,
                "end": 950,
                "sha256": "34" * 32,
                "state": [],
                "skip": [],
                "owned": [],
            },
            {
                "as": "admin",
                "owner": "",
                "start": 950,
                "end": 1000,
                "sha256": "cd" * 32,
                "state": ["SET a = 2;", "SET b = 3;"],
                "skip": [[990, 1000]],
                "owned": [],
            },
        ],
    }
    assert restore_plan.from_json(document) == PLAN
    imported = replace(PLAN, imported=True)
    assert restore_plan.to_json(imported)["imported"] is True
    assert restore_plan.from_json(restore_plan.to_json(imported)) == imported
    assert restore_plan.from_json({**document, "imported": "yes"}).imported is False
    empty = Plan("", (Run(ADMIN, 0, 0, "ef" * 32),), 0)
    assert restore_plan.from_json(restore_plan.to_json(empty)) == empty


def test_a_plans_loader_runs_are_every_run_the_admin_may_not_run() -> None:
    """An owner's run is the loader's unless its owner is a superuser where it is restored."""
    assert PLAN.loader_runs == 2
    assert replace(PLAN, runs=PLAN.runs[1:]).loader_runs == 2
    assert replace(PLAN, runs=PLAN.runs[2:]).loader_runs == 1
    assert replace(PLAN, runs=PLAN.runs[3:]).loader_runs == 0


def test_a_plan_from_its_json_is_typed_as_written() -> None:
    """Numbers written as text, and tuples for lists: what a plan compares equal to."""
    document = restore_plan.to_json(PLAN)
    document["size"] = "1000"
    document["runs"][1].update(start="100", skip=[["120", "130"]], owned=[("150", "180")])
    plan = restore_plan.from_json(document)
    assert plan.size == 1000
    assert plan.runs[1].start == 100
    assert plan.runs[1].skips == ((120, 130),)
    assert plan.runs[1].owned == ((150, 180),)


def _edited(run: int, **changes: Any) -> dict[str, Any]:
    document = restore_plan.to_json(PLAN)
    document["runs"][run].update(changes)
    return document


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        ({**restore_plan.to_json(PLAN), "version": 3}, "^unknown restore plan$"),
        ({**restore_plan.to_json(PLAN), "version": "1"}, "^unknown restore plan$"),
        ({**restore_plan.to_json(PLAN), "version": 0}, "^unknown restore plan$"),
        ({**restore_plan.to_json(PLAN), "version": -1}, "^unknown restore plan$"),
        ({k: v for k, v in restore_plan.to_json(PLAN).items() if k != "version"}, "unknown"),
        (_edited(1, **{"as": "superuser"}), "^restore plan out of order$"),
        (_edited(1, start=99), "out of order"),  # before the run before it ends
        (_edited(1, start=901), "out of order"),  # starts after it ends
        (_edited(0, start=-1), "out of order"),
        (_edited(0, sha256=""), "^restore plan with a run and no sha256$"),
        (_edited(2, sha256="ab" * 31), "a run and no sha256"),
        (_edited(2, sha256="ab" * 33), "a run and no sha256"),
        (_edited(0, skip=[[20, 10]]), "^restore plan ranges out of order$"),
        (_edited(0, skip=[[30, 40], [10, 20]]), "ranges out of order"),
        (_edited(0, skip=[[90, 101]]), "ranges out of order"),
        (_edited(3, skip=[[949, 960]]), "ranges out of order"),
        (_edited(1, owned=[[99, 120]]), "ranges out of order"),
        (_edited(1, owned=[[850, 901]]), "ranges out of order"),
        (_edited(1, owned=[[200, 300], [250, 260]]), "ranges out of order"),
        (_edited(1, owned=[[300, 200]]), "ranges out of order"),
        ({**restore_plan.to_json(PLAN), "size": 999}, "^restore plan past the dump's end$"),
    ],
)
def test_a_plan_out_of_shape_is_refused(document: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValueError, match=problem) as caught:
        restore_plan.from_json(document)
    assert not isinstance(caught.value, restore_plan.OldPlan)


@pytest.mark.parametrize("version", [1])
def test_a_plan_of_an_earlier_version_is_told_apart(version: int) -> None:
    """Its dump is planned again when read (core/manifests.py), not refused."""
    old = {**restore_plan.to_json(PLAN), "version": version}
    with pytest.raises(restore_plan.OldPlan, match=r"^a restore plan of an earlier version$"):
        restore_plan.from_json(old)
    assert issubclass(restore_plan.OldPlan, ValueError)
    assert version + 1 == restore_plan.PLAN_VERSION


def test_a_plan_may_end_at_the_dumps_end_and_runs_and_ranges_may_be_empty() -> None:
    document = restore_plan.to_json(PLAN)
    document["runs"][2].update(start=900, end=900)
    document["runs"][3].update(start=900)
    document["runs"][3]["skip"] = [[900, 900], [1000, 1000]]
    document["runs"][1]["owned"] = [[100, 100], [100, 200], [200, 900]]
    plan = restore_plan.from_json(document)
    assert (plan.runs[2].start, plan.runs[2].end, plan.runs[3].skips) == (
        900,
        900,
        ((900, 900), (1000, 1000)),
    )
    assert plan.runs[1].owned == ((100, 100), (100, 200), (200, 900))
    assert restore_plan.from_json({**document, "size": 5000}).size == 5000
