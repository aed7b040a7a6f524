"""The command line: parses, calls the core, prints.

Errors become one line on stderr and an exit code; tracebacks only with --debug.
"""

from __future__ import annotations

import argparse
import getpass
import logging
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from pgkeep import cli_keys, errors, formats, logs, tokens
from pgkeep.cli_progress import follow
from pgkeep.cli_targets import targets
from pgkeep.config import Settings, load_settings
from pgkeep.core import options
from pgkeep.core.events import Actor
from pgkeep.core.importing import Importing
from pgkeep.core.jobs import JobStatus
from pgkeep.core.models import Compression, DumpFormat, Verification
from pgkeep.core.runner import JobRunner
from pgkeep.core.selecting import Selection
from pgkeep.core.service import BackupService

logger = logging.getLogger(__name__)

EXIT_CODES: dict[type[errors.PgkeepError], int] = {
    errors.PgkeepError: 1,
    errors.ConfigError: 2,
    errors.InvalidInput: 2,
    errors.NotFound: 3,
    errors.Conflict: 4,
    errors.AuthError: 5,
    errors.Untrusted: 6,
    errors.NoIdentity: 2,
}


EXIT_NOT_VERIFIED = 6
EXIT_INCONCLUSIVE = 7  # the verify server lacked what the backup needs (core/environment.py)


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
    from pgkeep import wiring

    runtime = wiring.build(settings)
    if settings.servers:
        runtime.discover()
    service = runtime.service(args.target)
    runtime.announcing()
    actor = Actor(f"cli:{getpass.getuser()}", "cli")
    if args.action in ("create", "verify", "restore"):
        with runtime.keeping_leases():  # a job like any other: listed, exclusive, cancellable
            return _job(args, service, actor, runtime.jobs)
    if args.action == "list":
        for backup in service.catalog.list():
            created = formats.iso_ms(backup.created_at)
            recipients = ",".join(backup.recipients) or "-"
            size = formats.size_text(backup.size_bytes)
            print(f"{backup.name}\t{size}\t{created}\t{backup.trust}\t{recipients}")
    elif args.action == "import":
        return _import(args, runtime.importer(service), actor)
    else:
        stores = service.delete(args.name, actor)
        print(f"deleted {args.name} from {', '.join(stores)}")
    return 0


def _job(args: argparse.Namespace, service: BackupService, actor: Actor, jobs: JobRunner) -> int:
    """Create, verify or restore through the one door (the service's start_*), as a job."""
    if args.action == "create":
        chosen = options.resolve(
            service.creating.defaults,
            DumpFormat(args.format) if args.format else None,
            Compression(args.compression) if args.compression else None,
            args.level,
        )
        job = service.start_create(chosen, actor)
    elif args.action == "verify":
        job = service.start_verify(args.name, restore=args.restore, actor=actor)
    else:
        job = service.start_restore(
            args.name,
            args.target_database,
            replace=args.replace,
            confirm=args.confirm,
            actor=actor,
            selection=Selection(tuple(args.table), tuple(args.schema)),
        )
    done = follow(jobs, job.id)
    if isinstance(done.result, errors.PgkeepError):
        raise done.result
    if done.status is not JobStatus.SUCCEEDED:
        raise errors.Cancelled(done.error or str(done.status), done.details)
    if args.action == "create":
        backup = done.result
        print(f"{backup.name}\t{formats.size_text(backup.size_bytes)}\t{backup.size_bytes} bytes")
    elif args.action == "verify":
        return _verify(done.result)
    else:
        result = done.result
        for table in result.tables:
            print(f"{table.table}\t{table.actual} rows")
        for key in result.dropped_foreign_keys:
            print(f"dropped foreign key {key.name} of {key.table} (to {key.references})")
        print(f"restored {args.name} into {result.target_database} in {result.duration_ms} ms")
    return 0


def _import(args: argparse.Namespace, importing: Importing, actor: Actor) -> int:
    if args.existing == (args.file is not None):
        raise errors.InvalidInput("name a FILE to import, or --existing (not both)")
    if args.file is not None:
        path = args.file
        backup = importing.dump(lambda: _read_file(path), actor)
        print(f"imported {args.file} as {backup.name}\t{backup.size_bytes} bytes")
        return 0
    outcomes = importing.existing(actor)
    for outcome in outcomes:
        print(f"{'imported' if outcome.imported else 'skipped '} {outcome.name}: {outcome.reason}")
    print(f"{sum(o.imported for o in outcomes)} of {len(outcomes)} unsigned backups imported")
    return 0 if all(o.imported for o in outcomes) else EXIT_NOT_VERIFIED


def _read_file(path: Path) -> Iterator[bytes]:
    try:
        with path.open("rb") as handle:
            while chunk := handle.read(1024 * 1024):
                yield chunk
    except OSError as exc:
        raise errors.InvalidInput(f"cannot read {str(path)!r}: {exc.strerror}") from exc


def _verify(verification: Verification) -> int:
    for check in verification.checks:
        print(f"{'ok  ' if check.ok else 'FAIL'} {check.name}: {check.details}")
    for r in verification.rehearsals:
        print(
            f"{'ok  ' if r.ok else 'FAIL'} rehearsal PostgreSQL {r.major} {r.server}: {r.details}"
        )
    if verification.verified is None:
        print("INCONCLUSIVE: the verify server lacks what the backup needs (not a fault of it)")
        return EXIT_INCONCLUSIVE
    print("verified" if verification.verified else "NOT verified")
    return 0 if verification.verified else EXIT_NOT_VERIFIED


def _audit(args: argparse.Namespace, settings: Settings) -> int:
    from pgkeep import wiring
    from pgkeep.core.audit import Trail, verify

    runtime = wiring.build(settings)
    log: Trail = runtime.audit
    if args.file is not None:
        log = wiring.audit_log(settings, runtime.signer, args.file)
    report = verify(log, log.signer, log.anchor)
    for note in report.notes:
        print(f"note: {note}")
    if report.intact:
        print(f"audit log intact: {report.entries} entries in {log.where}")
        return 0
    print(f"audit log BROKEN at {report.problem} ({report.entries} entries in {log.where})")
    return EXIT_NOT_VERIFIED


def _keys(args: argparse.Namespace, settings: Settings) -> int:
    """The age keys as pgkeep names them: fingerprints only, never a key."""
    keys = settings.age_keys()
    for fingerprint in keys.fingerprints():
        print(f"recipient\t{fingerprint}\tnew backups are encrypted to it")
    for fingerprint in sorted(keys.opens()):
        print(f"identity\t{fingerprint}\topens backups encrypted to it")
    if not keys.recipients:
        print("no PGKEEP_AGE_RECIPIENTS: new backups are not encrypted")
    return 0


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
    backup.add_argument("--target", help="the target (default: the only one)")
    actions = backup.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="dump the target into a new backup")
    create.add_argument("--format", choices=[f.value for f in DumpFormat])
    create.add_argument("--compression", choices=[c.value for c in Compression])
    create.add_argument("--level", type=int)
    verify = actions.add_parser(
        "verify", help="check a backup; exit 6 if it fails, 7 if inconclusive"
    )
    verify.add_argument("name")
    verify.add_argument("--restore", action="store_true", help="also test-restore it")
    restore = actions.add_parser("restore", help="restore a backup into a new database")
    restore.add_argument("name")
    restore.add_argument("--target-database", required=True)
    restore.add_argument("--replace", action="store_true", help="drop and replace an existing one")
    restore.add_argument("--confirm", help="with --replace: the target database's name again")
    restore.add_argument("--table", action="append", default=[], help="only it (schema.table)")
    restore.add_argument("--schema", action="append", default=[], help="only its tables")
    actions.add_parser("list", help="list backups, newest first")
    delete = actions.add_parser("delete", help="delete one backup")
    delete.add_argument("name")
    imports = actions.add_parser(
        "import", help="make pgkeep trust a dump it did not sign (audited; never over HTTP)"
    )
    imports.add_argument("file", nargs="?", type=Path, help="a pg_dump file from elsewhere")
    imports.add_argument(
        "--existing",
        action="store_true",
        help="sign the backups whose unsigned manifest still matches their bytes",
    )
    backup.set_defaults(handler=_backup)

    listing = commands.add_parser("targets", help="every target, found servers' databases too")
    listing.set_defaults(handler=targets)

    audit = commands.add_parser("audit", help="the audit log")
    audit_actions = audit.add_subparsers(dest="action", required=True)
    verify_audit = audit_actions.add_parser("verify", help="check the audit log's hash chain")
    verify_audit.add_argument(
        "--file",
        type=Path,
        help="default: the control database's trail with PGKEEP_CONTROL_DATABASE_URL, else "
        "PGKEEP_AUDIT_LOG or pgkeep-audit.jsonl in the backup directory "
        "(checked against the anchor of the configured log)",
    )
    audit.set_defaults(handler=_audit)

    keys = commands.add_parser("keys", help="the age recipients and identities, as fingerprints")
    keys.set_defaults(handler=_keys)
    cli_keys.add_parser(commands)  # api-key: API keys, not age keys

    demo = commands.add_parser("demo", help="`make run`: serve a throwaway sample database")
    demo.add_argument("--host", default=None, help="default: PGKEEP_HOST, else 127.0.0.1")
    demo.add_argument("--port", type=int, default=None, help="default: PGKEEP_PORT, else 8000")
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
