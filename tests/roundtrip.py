"""Proving a restored database equals its source: schema, rows, sequences, large objects."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import psycopg
from psycopg import sql

from pgkeep.postgres import catalog

FIXTURES = Path(__file__).parent / "fixtures"
PAGILA = Path(__file__).parents[2] / "shared" / "fixtures" / "pagila"

_RELATIONS = """
SELECT n.nspname, c.relname, c.relispopulated
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_toast%' ORDER BY 1, 2
"""
_NOISE = re.compile(r"^(\\(un)?restrict .*|-- Dumped (from|by) .*|)$")


def load(url: str, *files: Path, psql: Path) -> None:
    for file in files:
        subprocess.run(
            [str(psql), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", str(file), url],
            check=True,
            capture_output=True,
        )


def fingerprint(url: str, pg_dump: Path) -> dict[str, object]:
    """Everything that must survive a round trip, in comparable form."""
    with psycopg.connect(url, autocommit=True) as conn:
        rows: dict[str, object] = {}
        for schema, name, populated in conn.execute(_RELATIONS).fetchall():
            if not populated:  # a materialized view created WITH NO DATA must stay so
                rows[f"{schema}.{name}"] = "not populated"
                continue
            query = sql.SQL(
                "SELECT count(*), md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), ''))"
                " FROM {} AS t"
            ).format(sql.Identifier(schema, name))
            rows[f"{schema}.{name}"] = conn.execute(query).fetchone()
        sequences = conn.execute(
            "SELECT schemaname, sequencename, last_value FROM pg_sequences ORDER BY 1, 2"
        ).fetchall()
        large_objects = conn.execute(
            "SELECT oid::bigint, md5(lo_get(oid)) FROM pg_largeobject_metadata ORDER BY 1"
        ).fetchall()
        counts = catalog.row_counts(conn)
    return {
        "schema": _schema(url, pg_dump),
        "rows": rows,
        "sequences": sequences,
        "large_objects": large_objects,
        "counts": counts,
    }


def _schema(url: str, pg_dump: Path) -> list[str]:
    out = subprocess.run(
        [str(pg_dump), "--schema-only", "--no-password", url],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return [line for line in out.splitlines() if not _NOISE.match(line)]
