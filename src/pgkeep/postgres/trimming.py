"""Trimming a restored staging database down to the tables a table-level restore keeps.

What a kept table needs is read from `pg_depend`: from the kept tables (and every
object in a kept schema), what they depend on (types, domains, sequences, the
functions of their defaults, checks and triggers, their schemas), and the parts that
depend on them (indexes, constraints, triggers, defaults, owned sequences), again and
again. Foreign keys are not followed: a kept table's foreign key to a table not kept is
dropped and named. Everything else of the dump (other tables, views, materialized
views, sequences, routines, types, schemas, event triggers) is dropped; extensions and
their members, large objects and `public` stay. Functions a PL/pgSQL body calls are not
recorded in `pg_depend`, and so are dropped unless something recorded needs them.

Only catalog reads and DROP/ALTER … DROP CONSTRAINT run, as pgkeep's role, with
`search_path` pg_catalog; no owner code is evaluated (event triggers, which would fire on
DROP, are dropped first; DROP EVENT TRIGGER fires none).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable
from typing import Any

import psycopg
from psycopg import sql

from pgkeep.core.models import DroppedForeignKey
from pgkeep.errors import RestoreFailed

Obj = tuple[int, int]  # (classid, objid) as in pg_depend
# System catalogs' own OIDs are fixed in every PostgreSQL (pg_class.h: 1259, ...).
PG_CLASS = 1259
PG_CONSTRAINT = 2606

_TABLES = (
    "SELECT c.oid, pg_catalog.format('%%I.%%I', n.nspname, c.relname) FROM pg_catalog.pg_class c"
    " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'r'"
    " AND pg_catalog.format('%%I.%%I', n.nspname, c.relname) = ANY(%s)"
)
_IN_SCHEMAS = """
SELECT 2615, n.oid FROM pg_catalog.pg_namespace n
WHERE pg_catalog.format('%%I', n.nspname) = ANY(%(s)s)
UNION ALL SELECT 1259, c.oid FROM pg_catalog.pg_class c
 JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p', 'f', 'v', 'm', 'S', 'c')
 AND pg_catalog.format('%%I', n.nspname) = ANY(%(s)s)
UNION ALL SELECT 1255, p.oid FROM pg_catalog.pg_proc p
 JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
 WHERE pg_catalog.format('%%I', n.nspname) = ANY(%(s)s)
UNION ALL SELECT 1247, t.oid FROM pg_catalog.pg_type t
 JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
 WHERE pg_catalog.format('%%I', n.nspname) = ANY(%(s)s)
"""
_DEPENDS = (
    "SELECT d.classid::oid, d.objid, d.refclassid::oid, d.refobjid, d.deptype"
    " FROM pg_catalog.pg_depend d WHERE d.deptype IN ('n', 'a', 'i', 'P', 'S')"
)
_RELATIONS = "SELECT c.oid FROM pg_catalog.pg_class c WHERE c.relkind IN ('r', 'p', 'f', 'v', 'm')"
_FOREIGN_KEYS = """
SELECT k.oid, k.conparentid = 0, k.conrelid, k.confrelid, n.nspname, c.relname, k.conname,
       pg_catalog.format('%I.%I', n.nspname, c.relname) AS name,
       (SELECT pg_catalog.format('%I.%I', rn.nspname, r.relname) FROM pg_catalog.pg_class r
        JOIN pg_catalog.pg_namespace rn ON rn.oid = r.relnamespace WHERE r.oid = k.confrelid)
FROM pg_catalog.pg_constraint k JOIN pg_catalog.pg_class c ON c.oid = k.conrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE k.contype = 'f' ORDER BY name, k.conname
"""
# Candidates to drop, outside system schemas (pg_*, information_schema): relations,
# routines, types, schemas. One internal to another (a row type, an identity sequence, an
# array type) or an extension's member is dropped with its owner, never by itself.
_CANDIDATES = """
SELECT o.cls, o.oid, o.kind, o.name FROM (
  SELECT 1259 AS cls, c.oid, c.relkind::text AS kind, n.nspname,
         pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(c.relname) AS name
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  WHERE c.relkind IN ('v', 'm', 'r', 'p', 'f', 'S')
  UNION ALL
  SELECT 1255, p.oid, 'routine', n.nspname, p.oid::pg_catalog.regprocedure::text
  FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
  UNION ALL
  SELECT 1247, t.oid, CASE t.typtype WHEN 'd' THEN 'domain' ELSE 'type' END, n.nspname,
         pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(t.typname)
  FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
  WHERE t.typtype IN ('b', 'c', 'd', 'e', 'r') AND (t.typrelid = 0 OR (
    SELECT r.relkind FROM pg_catalog.pg_class r WHERE r.oid = t.typrelid) = 'c')
  UNION ALL
  SELECT 2615, n.oid, 'schema', n.nspname, pg_catalog.quote_ident(n.nspname)
  FROM pg_catalog.pg_namespace n WHERE n.nspname <> 'public'
) AS o
WHERE o.nspname NOT IN ('pg_catalog', 'information_schema') AND o.nspname !~ '^pg_'
  AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = o.cls
                  AND d.objid = o.oid AND d.deptype IN ('i', 'e'))
"""
_DROP = {
    "v": "DROP VIEW IF EXISTS {} CASCADE",
    "m": "DROP MATERIALIZED VIEW IF EXISTS {} CASCADE",
    "r": "DROP TABLE IF EXISTS {} CASCADE",
    "p": "DROP TABLE IF EXISTS {} CASCADE",
    "f": "DROP FOREIGN TABLE IF EXISTS {} CASCADE",
    "S": "DROP SEQUENCE IF EXISTS {} CASCADE",
    "routine": "DROP ROUTINE IF EXISTS {} CASCADE",
    "domain": "DROP DOMAIN IF EXISTS {} CASCADE",
    "type": "DROP TYPE IF EXISTS {} CASCADE",
    "schema": "DROP SCHEMA IF EXISTS {} CASCADE",
}
_ORDER = list(_DROP)


def trim(
    conn: psycopg.Connection[Any], tables: Collection[str], schemas: Collection[str]
) -> list[DroppedForeignKey]:
    """Keep `tables` (`schema.table` as `%I.%I` writes them), every object of `schemas`
    and what they need; drop the rest; the foreign keys dropped. One transaction."""
    with conn.transaction():
        conn.execute("SET LOCAL search_path = pg_catalog")
        for (name,) in conn.execute("SELECT evtname FROM pg_catalog.pg_event_trigger").fetchall():
            conn.execute(sql.SQL("DROP EVENT TRIGGER {}").format(sql.Identifier(name)))
        seeds = _seeds(conn, tables, schemas)
        edges = conn.execute(_DEPENDS).fetchall()
        relations = {int(r[0]) for r in conn.execute(_RELATIONS).fetchall()}
        keys = conn.execute(_FOREIGN_KEYS).fetchall()
        foreign = {(PG_CONSTRAINT, int(k[0])) for k in keys}
        kept = needed(seeds, edges, foreign, relations)
        dropped = []
        for _, top, table, references, schema, relname, conname, name, target in keys:
            # a partition's copy of its parent's foreign key goes with the parent's
            if top and (PG_CLASS, table) in kept and (PG_CLASS, references) not in kept:
                conn.execute(
                    sql.SQL("ALTER TABLE {} DROP CONSTRAINT IF EXISTS {}").format(
                        sql.Identifier(schema, relname), sql.Identifier(conname)
                    )
                )
                dropped.append(DroppedForeignKey(str(name), str(conname), str(target)))
        for kind, drop in sorted(_unneeded(conn, kept), key=lambda c: _ORDER.index(c[0])):
            # `drop` is the catalog's own quoted name (quote_ident, regprocedure)
            conn.execute(sql.SQL(_DROP[kind]).format(sql.SQL(drop)))
        missing = set(tables) - {str(r[1]) for r in conn.execute(_TABLES, (list(tables),))}
        if missing:
            raise RestoreFailed(
                "trimming the restored database dropped tables it was to keep",
                ", ".join(sorted(missing)),
            )
    return dropped


def needed(
    seeds: Iterable[Obj],
    edges: Iterable[tuple[Any, ...]],
    foreign: set[Obj],
    relations: set[int],
) -> set[Obj]:
    """The closure of `seeds` over `pg_depend` rows: what each needs, and its parts (auto or
    internal dependents that are no table or view: a partition is not part of its parent).
    Foreign keys (`foreign`) are kept as parts, never followed to what they reference."""
    needs: dict[Obj, list[Obj]] = defaultdict(list)
    parts: dict[Obj, list[Obj]] = defaultdict(list)
    for cls, oid, refcls, refoid, deptype in edges:
        needs[(int(cls), int(oid))].append((int(refcls), int(refoid)))
        if deptype in ("a", "i") and not (int(cls) == PG_CLASS and int(oid) in relations):
            parts[(int(refcls), int(refoid))].append((int(cls), int(oid)))
    kept: set[Obj] = set()
    todo = list(seeds)
    while todo:
        obj = todo.pop()
        if obj in kept:
            continue
        kept.add(obj)
        todo.extend(parts[obj])
        if obj not in foreign:
            todo.extend(needs[obj])
    return kept


def _seeds(
    conn: psycopg.Connection[Any], tables: Collection[str], schemas: Collection[str]
) -> list[Obj]:
    found = conn.execute(_TABLES, (list(tables),)).fetchall()
    missing = set(tables) - {str(r[1]) for r in found}
    if missing:
        raise RestoreFailed(
            "the restored database lacks tables its manifest counted", ", ".join(sorted(missing))
        )
    seeds = [(PG_CLASS, int(r[0])) for r in found]
    if schemas:
        rows = conn.execute(_IN_SCHEMAS, {"s": list(schemas)}).fetchall()
        seeds += [(int(r[0]), int(r[1])) for r in rows]
    return seeds


def _unneeded(conn: psycopg.Connection[Any], kept: set[Obj]) -> list[tuple[str, str]]:
    rows = conn.execute(_CANDIDATES).fetchall()
    return [(str(r[2]), str(r[3])) for r in rows if (int(r[0]), int(r[1])) not in kept]
