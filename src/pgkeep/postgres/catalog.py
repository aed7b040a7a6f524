"""Questions asked of a database's catalog: its user tables and their exact row counts."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import psycopg
from psycopg import sql

from pgkeep.core.environment import Offers
from pgkeep.core.models import SourceFacts

# Ordinary tables (partitions included, their parents not, so rows count once),
# outside system schemas, and not owned by an extension (pg_dump skips those).
USER_TABLES = """
SELECT n.nspname, c.relname, pg_catalog.format('%I.%I', n.nspname, c.relname)
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'
  AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                  WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
                  AND d.objid = c.oid AND d.deptype = 'e')
ORDER BY 3
"""


def row_counts(conn: psycopg.Connection[Any]) -> dict[str, int]:
    """Exact `count(*)` of every user table, keyed `schema.table` (quoted where needed).

    With `row_security` off, a table under row-level security raises an error instead of
    running its policies (an owner's code) in pgkeep's session; `ONLY`, so a table's
    inheritance children are counted once, as themselves.
    """
    counts = {}
    conn.execute("SET row_security = off")
    for schema, table, key in conn.execute(USER_TABLES).fetchall():
        query = sql.SQL("SELECT pg_catalog.count(*) FROM ONLY {}").format(
            sql.Identifier(schema, table)
        )
        row = conn.execute(query).fetchone()
        counts[str(key)] = int(row[0]) if row else 0
    return counts


def database_size(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute(
        "SELECT pg_catalog.pg_database_size(pg_catalog.current_database())"
    ).fetchone()
    return int(row[0]) if row else 0


# What a restore needs to know of the source, read in the dump's own snapshot.
_OWNER = (
    "SELECT pg_catalog.pg_get_userbyid(d.datdba) FROM pg_catalog.pg_database d"
    " WHERE d.datname = pg_catalog.current_database()"
)
_OWNERS = """
SELECT DISTINCT pg_catalog.pg_get_userbyid(o) FROM (
  SELECT c.relowner FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n
    ON n.oid = c.relnamespace WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
    AND n.nspname NOT LIKE 'pg\\_toast%'
  UNION SELECT p.proowner FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n
    ON n.oid = p.pronamespace WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
  UNION SELECT t.typowner FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n
    ON n.oid = t.typnamespace WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
  UNION SELECT n.nspowner FROM pg_catalog.pg_namespace n
    WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
    AND n.nspname NOT LIKE 'pg\\_%'
  UNION SELECT l.lomowner FROM pg_catalog.pg_largeobject_metadata l
) AS owners(o) ORDER BY 1
"""
# The roles its grants name (as grantee or grantor; PUBLIC is 0), and default privileges'.
_GRANTEES = """
SELECT DISTINCT pg_catalog.pg_get_userbyid(r) FROM (
  SELECT a.grantee, a.grantor FROM (
    SELECT c.relacl FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n
      ON n.oid = c.relnamespace WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
    UNION ALL SELECT t.attacl FROM pg_catalog.pg_attribute t JOIN pg_catalog.pg_class c
      ON c.oid = t.attrelid JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
    UNION ALL SELECT p.proacl FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n
      ON n.oid = p.pronamespace WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
    UNION ALL SELECT y.typacl FROM pg_catalog.pg_type y JOIN pg_catalog.pg_namespace n
      ON n.oid = y.typnamespace WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
    UNION ALL SELECT n.nspacl FROM pg_catalog.pg_namespace n
      WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
    UNION ALL SELECT d.defaclacl FROM pg_catalog.pg_default_acl d
    UNION ALL SELECT l.lomacl FROM pg_catalog.pg_largeobject_metadata l
  ) AS acls(acl), LATERAL pg_catalog.aclexplode(acls.acl) a
  WHERE acls.acl IS NOT NULL
  UNION ALL SELECT d.defaclrole, 0::pg_catalog.oid FROM pg_catalog.pg_default_acl d
) AS named(grantee, grantor), LATERAL (VALUES (named.grantee), (named.grantor)) AS v(r)
WHERE v.r <> 0 ORDER BY 1
"""
_EXTENSIONS = "SELECT e.extname, e.extversion FROM pg_catalog.pg_extension e ORDER BY 1"
_SERVER_ID = "SELECT s.system_identifier::text FROM pg_catalog.pg_control_system() s"


def source_facts(conn: psycopg.Connection[Any]) -> SourceFacts:
    """The database's owner, the roles owning its objects, its extensions and the server's
    identity, each in a savepoint (one the role may not read is left empty)."""
    found: dict[str, list[tuple[Any, ...]]] = {}
    for key, query in (
        ("owner", _OWNER),
        ("owners", _OWNERS),
        ("grantees", _GRANTEES),
        ("extensions", _EXTENSIONS),
        ("server_id", _SERVER_ID),
    ):
        try:
            conn.execute("SAVEPOINT pgkeep_facts")
            found[key] = conn.execute(query).fetchall()
            conn.execute("RELEASE SAVEPOINT pgkeep_facts")
        except psycopg.Error:
            conn.execute("ROLLBACK TO SAVEPOINT pgkeep_facts")
    return SourceFacts(
        database_owner=str(found["owner"][0][0]) if found.get("owner") else "",
        owners=tuple(str(r[0]) for r in found.get("owners", [])),
        grantees=tuple(str(r[0]) for r in found.get("grantees", [])),
        extensions=tuple((str(r[0]), str(r[1])) for r in found.get("extensions", [])),
        server_id=str(found["server_id"][0][0]) if found.get("server_id") else "",
    )


_AVAILABLE = """
SELECT e.name, pg_catalog.array_agg(e.version ORDER BY e.version)
FROM pg_catalog.pg_available_extension_versions e GROUP BY e.name
"""
_ROLES = "SELECT r.rolname FROM pg_catalog.pg_roles r WHERE r.rolname = ANY(%s)"


def offers(conn: psycopg.Connection[Any], server: str, roles: Iterable[str]) -> Offers:
    """What a server has for a restore: its major, the extensions it can install (with
    their versions), which of `roles` exist."""
    available = {str(n): tuple(str(v) for v in vs) for n, vs in conn.execute(_AVAILABLE)}
    found = frozenset(str(r[0]) for r in conn.execute(_ROLES, (list(roles),)))
    version = conn.info.server_version
    return Offers(server, version // 10000, available, found)
