"""`make run`: the service on a throwaway PostgreSQL with sample data, or on PGKEEP_DATABASE_URL.

With PGKEEP_DEMO_S3=1 the backups go to a throwaway S3 server (SeaweedFS) started
beside it. Prints an OWNER token, the settings and curl lines to try; Ctrl-C stops
the server and removes the throwaway cluster (and S3 server).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shlex
import signal
import socket
import tempfile
from datetime import timedelta
from pathlib import Path
from types import FrameType

from pgkeep import tokens
from pgkeep.config import Settings, load_settings
from pgkeep.errors import ConfigError, ToolError
from pgkeep.postgres.privileges import SETUP_SQL
from pgkeep.serve import listen, serve
from pgkeep.throwaway.cluster import ThrowawayCluster, available_bin_dirs
from pgkeep.throwaway.s3 import ThrowawayS3

SAMPLE_SQL = Path(__file__).with_name("sample.sql")
SAMPLE_DATABASE = "shop"  # also the role that owns it
ROLE = "pgkeep"


def run(host: str | None, port: int | None) -> int:
    """Serve until Ctrl-C, the documented way to stop it: that exits 0 (make says nothing).
    The address: the arguments, else PGKEEP_HOST and PGKEEP_PORT, else 127.0.0.1:8000.
    SIGTERM (`timeout`, `kill`) stops it the same way: the server shuts down gracefully,
    raises the signal again, and here it ends like Ctrl-C, so the throwaway servers are
    removed rather than left running."""
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        return _run(host, port)
    except KeyboardInterrupt:
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _address(host: str | None, port: int | None) -> tuple[str, int]:
    host = host or os.environ.get("PGKEEP_HOST") or "127.0.0.1"
    if port is None:
        given = os.environ.get("PGKEEP_PORT") or "8000"
        if not given.isdigit() or not 0 < int(given) < 65536:
            raise ConfigError(f"PGKEEP_PORT: {given[:20]!a} is not a port number")
        port = int(given)
    return host, port


def _run(host: str | None, port: int | None) -> int:
    host, port = _address(host, port)
    # Bound before anything starts or is printed: a port in use is one line, no banner.
    listening = listen(host, port)
    overrides: dict[str, object] = {"host": host, "port": port}
    if not os.environ.get("PGKEEP_JWT_SECRET") and not _other_key_configured():
        overrides["jwt_secret"] = secrets.token_urlsafe(48)
    with contextlib.ExitStack() as stack:
        stack.callback(listening.close)
        if os.environ.get("PGKEEP_DEMO_S3") == "1":
            overrides |= _throwaway_s3(stack)
        if os.environ.get("PGKEEP_DATABASE_URL"):
            settings = load_settings(**overrides)
            _serve_with_banner(
                settings, "your database (PGKEEP_DATABASE_URL)", listening, throwaway=False
            )
            return 0
        bin_dirs = available_bin_dirs()
        if not bin_dirs:
            raise ToolError(
                "no PostgreSQL server binaries found", "run `make run`, which installs them"
            )
        major, bin_dir = max(bin_dirs.items())
        # Runs last, also when Ctrl-C comes back out of the server as KeyboardInterrupt.
        stack.callback(print, "Stopped; the throwaway cluster is removed.", flush=True)
        cluster = stack.enter_context(ThrowawayCluster(bin_dir))
        url = least_privilege(cluster)
        # Fresh each run, and gone with it (as the banner says): the backups of a cluster
        # that no longer exists are nobody's.
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="pgkeep-demo-")))
        if not os.environ.get("PGKEEP_BACKUP_DIR"):
            overrides["backup_dir"] = work / "backups"
        if not os.environ.get("PGKEEP_STATE_DIR"):
            overrides["state_dir"] = work / "state"
        settings = load_settings(
            database_url=url, pg_bin_dir=bin_dir, schedule_database=ROLE, **overrides
        )
        _serve_with_banner(
            settings,
            f"a throwaway PostgreSQL {major} with sample data, as the role {ROLE!r} "
            "(no superuser: docs/operations.md, least privilege)",
            listening,
            throwaway=True,
        )
    return 0


def least_privilege(cluster: ThrowawayCluster) -> str:
    """The sample database owned by an ordinary role, and pgkeep's role made as the docs say
    (postgres/privileges.py SETUP_SQL); the URL pgkeep backs it up with."""
    password = secrets.token_urlsafe(18)
    cluster.execute(f"CREATE ROLE {SAMPLE_DATABASE}")
    cluster.execute(f"CREATE DATABASE {SAMPLE_DATABASE} OWNER {SAMPLE_DATABASE}")
    cluster.execute(f"SET ROLE {SAMPLE_DATABASE};\n{SAMPLE_SQL.read_text()}", SAMPLE_DATABASE)
    setup = SETUP_SQL.format(role=ROLE, password=f"'{password}'", owners=SAMPLE_DATABASE)
    for statement in filter(str.strip, setup.split(";\n")):
        cluster.execute(statement)
    return f"postgresql://{ROLE}:{password}@127.0.0.1:{cluster.port}/{SAMPLE_DATABASE}"


def _throwaway_s3(stack: contextlib.ExitStack) -> dict[str, object]:
    """A SeaweedFS on loopback with a bucket; its credentials go to this process's AWS
    variables (where boto3 looks; pg_dump and psql never see them)."""
    server = stack.enter_context(ThrowawayS3())
    bucket = server.create_bucket("pgkeep-demo")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        os.environ[name] = server.env()[name]
    os.environ.pop("AWS_SESSION_TOKEN", None)
    os.environ.pop("AWS_PROFILE", None)
    return {
        "storage_url": f"s3://{bucket}/backups",
        "s3_endpoint_url": server.endpoint,
        "s3_region": "us-east-1",
    }


def _exports(settings: Settings) -> list[tuple[str, str]]:
    """The settings the CLI needs to reach what `make run` serves."""
    values = [
        ("PGKEEP_DATABASE_URL", settings.require_database_url()),
        ("PGKEEP_BACKUP_DIR", str(settings.backup_dir.resolve())),
        ("PGKEEP_SCHEDULE_DATABASE", settings.schedule_database),
    ]
    if settings.state_dir is not None:  # the CLI's jobs on the same board as the server's
        values.append(("PGKEEP_STATE_DIR", str(settings.state_dir)))
    if settings.storage_url:
        values += [
            ("PGKEEP_STORAGE_URL", settings.storage_url),
            ("PGKEEP_S3_ENDPOINT_URL", settings.s3_endpoint_url or ""),
            ("PGKEEP_S3_REGION", settings.s3_region or ""),
            ("AWS_ACCESS_KEY_ID", os.environ.get("AWS_ACCESS_KEY_ID", "")),
            ("AWS_SECRET_ACCESS_KEY", os.environ.get("AWS_SECRET_ACCESS_KEY", "")),
        ]
    if settings.jwt_secret is not None:
        values.append(("PGKEEP_JWT_SECRET", settings.jwt_secret.get_secret_value()))
    if settings.pg_bin_dir is not None:
        values.append(("PGKEEP_PG_BIN_DIR", str(settings.pg_bin_dir)))
    return values


def _other_key_configured() -> bool:
    return bool(os.environ.get("PGKEEP_JWT_PUBLIC_KEY") or os.environ.get("PGKEEP_JWT_JWKS_URL"))


def _serve_with_banner(
    settings: Settings, what: str, listening: socket.socket, *, throwaway: bool
) -> None:
    base = f"http://{settings.host}:{settings.port}"
    where = f"{settings.backup_dir}/"
    if settings.storage_url:
        where = f"{settings.storage_url} at {settings.s3_endpoint_url or 'AWS'}"
    lines = [
        f"pgkeep is backing up {what}.",
        f"Web console: {base}/  (paste the token below)   backups in: {where}",
    ]
    if settings.jwt_secret is not None:
        token = tokens.mint(settings, sub="demo", role="OWNER", ttl=timedelta(hours=12))
        auth = '-H "Authorization: Bearer $TOKEN"'
        if throwaway:
            lines += [
                "",
                "In another shell, for the CLI (.venv/bin/pgkeep backup list, pgkeep token …)",
                "against this throwaway setup; these values, and its backups, die with it:",
                *(f"  export {name}={shlex.quote(value)}" for name, value in _exports(settings)),
            ]
        lines += [
            "",
            "An OWNER token (valid 12 hours):",
            f"  export TOKEN={token}",
            "",
            "Try:",
            f"  curl -s -X POST {auth} {base}/api/backup/create",
            f"  curl -s {auth} {base}/api/backup/list",
            f"  curl -sf -OJ {auth} {base}/api/backup/download/NAME",
            f"  curl -s -X POST {auth} {base}/api/backup/NAME/verify",
            f"  curl -s -X POST {auth} -H 'Content-Type: application/json'"
            f' -d \'{{"targetDatabase": "shop_copy"}}\' {base}/api/backup/NAME/restore',
            f"  curl -s -X DELETE {auth} {base}/api/backup/NAME",
            "  (NAME is a filename from the list, e.g. backup-2024-12-09T10-30-45.sql)",
        ]
    lines += ["", "Ctrl-C stops it.", ""]
    print("\n".join(lines), flush=True)
    serve(settings, listening=listening)
