"""The command line: parses, calls the core, prints.

Errors become one line on stderr and an exit code; tracebacks only with --debug.
"""

from __future__ import annotations

import argparse
import getpass
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from pgkeep import errors, formats, logs, tokens
from pgkeep.cli_progress import progress_control
from pgkeep.config import Settings, load_settings
from pgkeep.core.models import BackupOptions, Compression, DumpFormat, Verification

logger = logging.getLogger(__name__)

EXIT_CODES: dict[type[errors.PgkeepError], int] = {
    errors.PgkeepError: 1,
    errors.ConfigError: 2,
    errors.InvalidInput: 2,
    errors.NotFound: 3,
    errors.Conflict: 4,
    errors.AuthError: 5,
}


EXIT_NOT_VERIFIED = 6


def exit_code_for(exc: errors.PgkeepError) -> int:
    return next(EXIT_CODES[c] for c in type(exc).__mro__ if c in EXIT_CODES)


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    from pgkeep.serve import serve

    serve(settings, host=args.host, port=args.port)
    return 0


def _token(args: argparse.Namespace, settings: Settings) -> int:
    print(tokens.mint(settings, sub=args.sub, role=args.role, ttl=tokens.parse_ttl(args.ttl)))
    return 0


def _backup(args: argparse.Namespace, settings: Settings) -> int:
    from pgkeep.http.app import build_service

    service = build_service(settings)
    if args.action == "create":
        defaults = service.defaults
        options = BackupOptions(
            DumpFormat(args.format) if args.format else defaults.format,
            Compression(args.compression) if args.compression else defaults.compression,
            args.level,
        )
        with progress_control() as control:
            backup = service.create(options, f"cli:{getpass.getuser()}", control)
        print(f"{backup.name}\t{formats.size_text(backup.size_bytes)}\t{backup.size_bytes} bytes")
    elif args.action == "list":
        for backup in service.list():
            created = formats.iso_ms(backup.created_at)
            print(f"{backup.name}\t{formats.size_text(backup.size_bytes)}\t{created}")
    elif args.action == "verify":
        return _verify(service.verify(args.name, restore=args.restore))
    elif args.action == "restore":
        result = service.restore(
            args.name, args.target_database, replace=args.replace, confirm=args.confirm
        )
        for table in result.tables:
            print(f"{table.table}\t{table.actual} rows")
        print(f"restored {args.name} into {result.target_database} in {result.duration_ms} ms")
    else:
        service.delete(args.name)
        print(f"deleted {args.name}")
    return 0


def _verify(verification: Verification) -> int:
    for check in verification.checks:
        print(f"{'ok  ' if check.ok else 'FAIL'} {check.name}: {check.details}")
    print("verified" if verification.verified else "NOT verified")
    return 0 if verification.verified else EXIT_NOT_VERIFIED


def _audit(args: argparse.Namespace, settings: Settings) -> int:
    from pgkeep.storage.audit import verify

    path = args.file or settings.audit_log or settings.backup_dir / "pgkeep-audit.jsonl"
    intact, count, problem = verify(path)
    if intact:
        print(f"audit log intact: {count} entries in {path}")
        return 0
    print(f"audit log BROKEN at {problem} ({count} entries in {path})")
    return EXIT_NOT_VERIFIED


def _demo(args: argparse.Namespace, settings: Settings) -> int:
    from pgkeep.demo import run

    return run(host=args.host, port=args.port)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pgkeep", description="PostgreSQL backups as a service")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve the HTTP API")
    serve.add_argument("--host", help="default PGKEEP_HOST")
    serve.add_argument("--port", type=int, help="default PGKEEP_PORT")
    serve.set_defaults(handler=_serve)

    token = commands.add_parser("token", help="print an HS256 token signed with PGKEEP_JWT_SECRET")
    token.add_argument("--sub", required=True, help="who the token is for")
    token.add_argument("--role", default="OWNER")
    token.add_argument("--ttl", default="1h", help="lifetime: 90s, 30m, 1h, 7d")
    token.set_defaults(handler=_token)

    backup = commands.add_parser("backup", help="create, list or delete backups without HTTP")
    actions = backup.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="dump the target into a new backup")
    create.add_argument("--format", choices=[f.value for f in DumpFormat])
    create.add_argument("--compression", choices=[c.value for c in Compression])
    create.add_argument("--level", type=int)
    verify = actions.add_parser("verify", help="check a backup; exit 6 if it fails")
    verify.add_argument("name")
    verify.add_argument("--restore", action="store_true", help="also test-restore it")
    restore = actions.add_parser("restore", help="restore a backup into a new database")
    restore.add_argument("name")
    restore.add_argument("--target-database", required=True)
    restore.add_argument("--replace", action="store_true", help="drop and replace an existing one")
    restore.add_argument("--confirm", help="with --replace: the target database's name again")
    actions.add_parser("list", help="list backups, newest first")
    delete = actions.add_parser("delete", help="delete one backup")
    delete.add_argument("name")
    backup.set_defaults(handler=_backup)

    audit = commands.add_parser("audit", help="the audit log")
    audit_actions = audit.add_subparsers(dest="action", required=True)
    verify_audit = audit_actions.add_parser("verify", help="check the audit log's hash chain")
    verify_audit.add_argument(
        "--file",
        type=Path,
        help="default: PGKEEP_AUDIT_LOG or pgkeep-audit.jsonl in the backup directory",
    )
    audit.set_defaults(handler=_audit)

    demo = commands.add_parser("demo", help="`make run`: serve a throwaway sample database")
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8000)
    demo.set_defaults(handler=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace, Settings], int] = args.handler
    try:
        settings = load_settings()
        logs.configure("DEBUG" if args.debug else settings.log_level, settings.log_format)
        return handler(args, settings)
    except errors.PgkeepError as exc:
        if args.debug:
            logger.exception("pgkeep failed")
        detail = f" ({exc.details})" if exc.details else ""
        print(f"pgkeep: error: {exc.message}{detail}".replace("\n", " | "), file=sys.stderr)
        return exit_code_for(exc)
    except KeyboardInterrupt:
        return 130
