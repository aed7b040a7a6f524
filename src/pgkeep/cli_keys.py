"""`pgkeep api-key create|list|revoke`: API keys from the command line, on a machine that
shares `pgkeep serve`'s state file or control database (its operator is an OWNER).
`create` prints the key once, alone on stdout; what it is goes to stderr."""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any

from pgkeep import formats
from pgkeep.config import Settings
from pgkeep.core.credentials import Credential
from pgkeep.core.events import Actor


def add_parser(commands: Any) -> None:
    keys = commands.add_parser("api-key", help="API keys for machines (create, list, revoke)")
    actions = keys.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="mint a key; prints it once")
    create.add_argument("--name", required=True)
    create.add_argument("--scope", action="append", required=True, help="repeat for more")
    create.add_argument("--target", action="append", help="repeat; default: every target")
    create.add_argument("--expires", help="1s to 366d (default 90d), or never")
    actions.add_parser("list", help="every key, without secrets")
    revoke = actions.add_parser("revoke", help="refuse a key from now on, on every instance")
    revoke.add_argument("id")
    keys.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from pgkeep import wiring

    keys = wiring.api_keys(wiring.build(settings))
    user = f"cli:{getpass.getuser()}"
    operator, actor = Credential("owner", user), Actor(user, "cli")
    if args.action == "create":
        record, key = keys.mint(operator, actor, args.name, args.scope, args.target, args.expires)
        expires = formats.iso_ms(record.expires_at) if record.expires_at else "never"
        print(key)
        print(
            f"API key {record.id} ({record.name}), expires {expires}: shown once", file=sys.stderr
        )
    elif args.action == "list":
        for k in keys.list():
            targets = ",".join(k.targets) if k.targets is not None else "*"
            state = "revoked" if k.revoked_at else "active"
            expires = formats.iso_ms(k.expires_at) if k.expires_at else "never"
            used = formats.iso_ms(k.last_used_at) if k.last_used_at else "-"
            print(f"{k.id}\t{k.name}\t{','.join(k.scopes)}\t{targets}\t{expires}\t{used}\t{state}")
    else:
        keys.revoke(operator, actor, args.id)
        print(f"revoked {args.id}")
    return 0
