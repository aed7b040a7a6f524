"""Who runs each part of a plain dump: pgkeep's own session, or only a loader role.

A restore never runs a database owner's code with more rights than its owners had, and
their code can run in any statement that names it: a CHECK or a domain check on every
row, but also a `'{1}'::domain[]` constant in a view, a partition bound, an aggregate's
initial value, a cast an FK's check calls. So an entry runs in pgkeep's admin session
only when its owner is a superuser here (their code runs as a superuser wherever it
is restored) or when it is of a kind that runs no code and needs pgkeep (grants, large
objects' metadata, extensions, sequence values). Every other entry, and every row,
runs as the loader: a temporary login role that is no superuser (postgres/loader.py).
Its `ALTER … OWNER TO` statements are taken out of its stream and run by the admin
after it (owner-run entries are made by the loader, then given to their owner), so
owners and grants stay exact. An imported dump (bytes pgkeep did not write) runs every
entry as the loader whoever it names as owner, gives owners only at the very end, and
lets the admin run only grants, comments and extensions, checked statement by statement.

The plan is a list of runs in the dump's own order, each a byte range run by one role
(`owner`: decided at restore, by whether the named owner is a superuser there); each
run carries its sha256 and is only handed to psql once proven: an admin run is spooled
and compared before psql sees a byte; a loader run is streamed and compared before its
last piece, so psql never reaches COMMIT on bytes that were not planned. A plain dump's
plan is made while it is written and signed in its manifest; one made before (or
imported) is planned in one extra pass.

Ambiguity always falls to the loader: an entry is run as admin only when its header
plainly says so, and a header's type is read wherever it occurs in the line, as a
name can hold `; Type: …` itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from pgkeep.core import sqlscan

ADMIN = "admin"
LOADER = "loader"
OWNER = "owner"  # the loader, unless the entry's owner is a superuser where it is restored
ROLES = (ADMIN, LOADER, OWNER)
_CHECK = re.compile(r"; Type: CHECK CONSTRAINT; Schema: ")
_ADMIN_DATA = re.compile(
    r"-- Name: (?:[^;\n]*); Type: (?:SEQUENCE SET|BLOB METADATA|STATISTICS DATA); Schema: [^;\n]*"
    r"; Owner: [^;\n]*\Z"
)
_FIELDS = re.compile(r"-- Name: .*; Type: (?P<type>[^;]*); Schema: .*; Owner: (?P<owner>.*)\Z")
# Kinds of entry that run no code of the owner's and may need pgkeep's rights.
ADMIN_TYPES = frozenset(
    {
        "ACL",
        "DEFAULT ACL",
        "EXTENSION",
        "ENCODING",
        "STDSTRINGS",
        "SEARCHPATH",
        "DATABASE",
        "DATABASE PROPERTIES",
        "LARGE OBJECT",
        "BLOB",
        "BLOBS",
    }
)
# Kinds with no owner in PostgreSQL's catalogs: pg_dump writes `Owner: -` for them, as it
# does for a role named "-" (whose entries are that role's, as any owner's).
OWNERLESS = frozenset({"CAST", "TRANSFORM", "ACCESS METHOD"})
STATE = ("default_tablespace", "default_table_access_method", "default_with_oids")
PLAN_VERSION = 2


def role_of(header: sqlscan.Header) -> tuple[str, str]:
    """Who runs an entry, and the owner its header names: rows and CHECK constraints the
    loader (for that owner); kinds that run no owner code the admin; the rest by owner.
    The owner is the header's last field, after any name: a name cannot change it."""
    line = header.line
    owner = line.rsplit("; Owner: ", 1)[1] if "; Owner: " in line else ""
    if header.data or _CHECK.search(line):
        return LOADER, owner
    if _ADMIN_DATA.match(line):
        return ADMIN, ""
    if any(line.count(f"; {key}: ") != 1 for key in ("Type", "Schema", "Owner")):
        return LOADER, owner  # a name holding `; Type: …`: the safe side
    fields = _FIELDS.match(line)
    if fields is None or fields["type"] == "SEQUENCE SET":
        return LOADER, owner
    ownerless = owner == "" or (owner == "-" and fields["type"] in OWNERLESS)
    if fields["type"] in ADMIN_TYPES or ownerless:
        return ADMIN, ""  # (no owner: an extension's comment, a cast, say)
    return OWNER, owner


def import_role_of(header: sqlscan.Header) -> tuple[str, str]:
    """Who runs an imported dump's entry (bytes pgkeep did not write): the admin only an
    extension (and its comment, which has no owner), every other entry the loader, which
    owns what it makes until the end of the restore."""
    role, _ = role_of(header)
    fields = _FIELDS.match(header.line)
    single = all(header.line.count(f"; {k}: ") == 1 for k in ("Type", "Schema", "Owner"))
    extension = fields is not None and (
        fields["type"] == "EXTENSION" or fields["owner"] in ("", "-")
    )
    if role == ADMIN and single and extension and not header.data:
        return ADMIN, ""
    return LOADER, ""


def is_owner_statement(statement: sqlscan.Statement) -> bool:
    """`ALTER … OWNER TO role;`: given to the admin after a loader made the object."""
    last = statement.last_words
    return statement.words[:1] == ("alter",) and ("owner", "to") in (last[-2:], last[-3:-1])


_ARCHIVE_ADMIN_DATA = ("SEQUENCE SET ", "BLOB METADATA ", "STATISTICS DATA ")


def archive_role(section: str, entry: str, imported: bool = False) -> tuple[str, str]:
    """Who runs a custom archive's data entry, and for which owner, from its `pg_restore
    --list` line after the ids (`DESC schema name owner`: the description comes first, so
    a name cannot change it; the owner is last). Its schema is printed and planned as a
    plain dump's (core/loading.py). An import's are all the loader's."""
    owner = entry.rsplit(" ", 1)[-1] if " " in entry else ""
    if imported:
        return LOADER, ""
    if section == "data" and entry.startswith(_ARCHIVE_ADMIN_DATA):
        return ADMIN, ""
    return LOADER, owner


@dataclass(frozen=True)
class Run:
    role: str  # ADMIN, LOADER, or OWNER (decided where it is restored)
    start: int
    end: int
    sha256: str  # of the bytes in it, its skips left out
    state: tuple[str, ...] = ()  # SET statements in effect where it starts (tablespace, …)
    skips: tuple[tuple[int, int], ...] = ()  # ranges never sent (the dump's \restrict lines)
    owner: str = ""  # the owner an OWNER run's headers name
    owned: tuple[tuple[int, int], ...] = ()  # its `ALTER … OWNER TO` statements


@dataclass(frozen=True)
class Plan:
    """How to restore one plain dump: its preamble (pg_dump's SET lines, given again to every
    run but the first) and its runs. Bytes between runs (the dump's own `\\restrict` and
    `\\unrestrict` lines) are never sent. `imported`: bytes pgkeep did not write (owners
    are given only at the end, and only the loader runs their code)."""

    preamble: str
    runs: tuple[Run, ...]
    size: int
    imported: bool = False

    @property
    def loader_runs(self) -> int:
        return sum(r.role != ADMIN for r in self.runs)


def to_json(plan: Plan) -> dict[str, Any]:
    return {
        "version": PLAN_VERSION,
        "preamble": plan.preamble,
        "size": plan.size,
        "imported": plan.imported,
        "runs": [
            {
                "as": r.role,
                "owner": r.owner,
                "start": r.start,
                "end": r.end,
                "sha256": r.sha256,
                "state": list(r.state),
                "skip": [list(s) for s in r.skips],
                "owned": [list(s) for s in r.owned],
            }
            for r in plan.runs
        ],
    }


class OldPlan(ValueError):
    """A plan written before this version (its dump is planned again when read)."""


def from_json(d: dict[str, Any]) -> Plan:
    if isinstance(d.get("version"), int) and 0 < d["version"] < PLAN_VERSION:
        raise OldPlan("a restore plan of an earlier version")
    if d.get("version") != PLAN_VERSION:
        raise ValueError("unknown restore plan")
    runs = tuple(
        Run(
            str(r["as"]),
            int(r["start"]),
            int(r["end"]),
            str(r["sha256"]),
            tuple(str(s) for s in r["state"]),
            tuple((int(a), int(b)) for a, b in r["skip"]),
            str(r["owner"]),
            tuple((int(a), int(b)) for a, b in r["owned"]),
        )
        for r in d["runs"]
    )
    previous = 0
    for run in runs:
        if run.role not in ROLES or not previous <= run.start <= run.end:
            raise ValueError("restore plan out of order")
        if len(run.sha256) != 64:
            raise ValueError("restore plan with a run and no sha256")
        for ranges in (run.skips, run.owned):
            inner = run.start
            for a, b in ranges:
                if not inner <= a <= b <= run.end:
                    raise ValueError("restore plan ranges out of order")
                inner = b
        previous = run.end
    if previous > int(d["size"]):
        raise ValueError("restore plan past the dump's end")
    return Plan(str(d["preamble"]), runs, int(d["size"]), d.get("imported") is True)
