"""`pgkeep targets`: every target, the databases found on `[servers.*]` too."""

from __future__ import annotations

import argparse

from pgkeep import formats
from pgkeep.config import Settings


def targets(args: argparse.Namespace, settings: Settings) -> int:
    from pgkeep import wiring

    runtime = wiring.build(settings)
    runtime.discover()
    print("target\tkind\tserver\tdatabase\tbackups\tnewest\tschedule")
    for name, service in sorted(runtime.services.items()):
        spec = runtime.specs[name]
        backups = service.catalog.list()
        newest = formats.iso_ms(backups[0].created_at) if backups else "-"
        database = spec.target.dbname if spec.kind == "database" else "-"
        state = " (gone)" if name in runtime.gone else ""
        print(
            f"{name}{state}\t{spec.kind}\t{spec.target.address}\t{database}\t{len(backups)}"
            f"\t{newest}\t{spec.settings.schedule or '-'}"
        )
    for refusal in runtime.refused:  # its folder is another target's: not backed up
        spec = refusal.spec
        print(
            f"{spec.name} (not added: prefix of {refusal.holder})\t{spec.kind}"
            f"\t{spec.target.address}\t{spec.target.dbname}\t-\t-\t-"
        )
    return 0
