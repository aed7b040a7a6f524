"""`make run`: the service on a throwaway PostgreSQL with sample data, or on PGKEEP_DATABASE_URL.

Prints an OWNER token and curl lines to try; Ctrl-C stops the server and
removes the throwaway cluster.
"""

from __future__ import annotations

import os
import secrets
from datetime import timedelta
from pathlib import Path

from pgkeep import tokens
from pgkeep.config import load_settings
from pgkeep.errors import ToolError
from pgkeep.postgres.cluster import ThrowawayCluster, available_bin_dirs
from pgkeep.serve import serve

SAMPLE_SQL = Path(__file__).with_name("sample.sql")
SAMPLE_DATABASE = "shop"


def run(host: str, port: int) -> int:
    overrides: dict[str, object] = {"host": host, "port": port}
    if not os.environ.get("PGKEEP_JWT_SECRET") and not _other_key_configured():
        overrides["jwt_secret"] = secrets.token_urlsafe(48)
    if os.environ.get("PGKEEP_DATABASE_URL"):
        settings = load_settings(**overrides)
        _serve_with_banner(settings, "your database (PGKEEP_DATABASE_URL)")
        return 0
    bin_dirs = available_bin_dirs()
    if not bin_dirs:
        raise ToolError(
            "no PostgreSQL server binaries found", "run `make run`, which installs them"
        )
    major, bin_dir = max(bin_dirs.items())
    with ThrowawayCluster(bin_dir) as cluster:
        url = cluster.create_database(SAMPLE_DATABASE)
        cluster.execute(SAMPLE_SQL.read_text(), SAMPLE_DATABASE)
        settings = load_settings(database_url=url, pg_bin_dir=bin_dir, **overrides)
        _serve_with_banner(settings, f"a throwaway PostgreSQL {major} with sample data")
    print("Stopped; the throwaway cluster is removed.")
    return 0


def _other_key_configured() -> bool:
    return bool(os.environ.get("PGKEEP_JWT_PUBLIC_KEY") or os.environ.get("PGKEEP_JWT_JWKS_URL"))


def _serve_with_banner(settings: object, what: str) -> None:
    from pgkeep.config import Settings

    assert isinstance(settings, Settings)  # noqa: S101
    base = f"http://{settings.host}:{settings.port}"
    lines = [
        f"pgkeep is backing up {what}.",
        f"Web console: {base}/  (paste the token below)   backups in: {settings.backup_dir}/",
    ]
    if settings.jwt_secret is not None:
        token = tokens.mint(settings, sub="demo", role="OWNER", ttl=timedelta(hours=12))
        auth = '-H "Authorization: Bearer $TOKEN"'
        lines += [
            "",
            "An OWNER token (valid 12 hours):",
            f"  export TOKEN={token}",
            "",
            "Try:",
            f"  curl -s -X POST {auth} {base}/api/backup/create",
            f"  curl -s {auth} {base}/api/backup/list",
            f"  curl -s -OJ {auth} {base}/api/backup/download/NAME",
            f"  curl -s -X POST {auth} {base}/api/backup/NAME/verify",
            f"  curl -s -X POST {auth} -H 'Content-Type: application/json'"
            f' -d \'{{"targetDatabase": "shop_copy"}}\' {base}/api/backup/NAME/restore',
            f"  curl -s -X DELETE {auth} {base}/api/backup/NAME",
            "  (NAME is a filename from the list, e.g. backup-2024-12-09T10-30-45.sql)",
        ]
    lines += ["", "Ctrl-C stops it.", ""]
    print("\n".join(lines), flush=True)
    serve(settings)
