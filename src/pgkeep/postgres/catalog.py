"""Questions asked of a database's catalog: its user tables and their exact row counts."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

# Ordinary tables (partitions included, their parents not, so rows count once),
# outside system schemas, and not owned by an extension (pg_dump skips those).
USER_TABLES = """
SELECT n.nspname, c.relname, format('%I.%I', n.nspname, c.relname)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                  AND d.objid = c.oid AND d.deptype = 'e')
ORDER BY 3
"""


def row_counts(conn: psycopg.Connection[Any]) -> dict[str, int]:
    """Exact `count(*)` of every user table, keyed `schema.table` (quoted where needed)."""
    counts = {}
    for schema, table, key in conn.execute(USER_TABLES).fetchall():
        query = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, table))
        row = conn.execute(query).fetchone()
        counts[str(key)] = int(row[0]) if row else 0
    return counts


def database_size(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
    return int(row[0]) if row else 0
