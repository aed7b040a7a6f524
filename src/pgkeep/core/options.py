"""One options resolver for a create, whoever asks (the HTTP body, the CLI's flags): what
is given, then the target's defaults (PGKEEP_DEFAULT_FORMAT, _COMPRESSION, _LEVEL).

A custom archive compresses only with gzip, so a zstd default becomes gzip for it (a
zstd asked for is refused where the options are checked); the default level goes with
the default compression only.
"""

from __future__ import annotations

from pgkeep.core.models import BackupOptions, Compression, DumpFormat


def resolve(
    defaults: BackupOptions,
    fmt: DumpFormat | None = None,
    compression: Compression | None = None,
    level: int | None = None,
) -> BackupOptions:
    chosen_format = fmt or defaults.format
    chosen = compression or defaults.compression
    if compression is None and chosen_format is DumpFormat.CUSTOM and chosen is Compression.ZSTD:
        chosen = Compression.GZIP
    if level is None and chosen is defaults.compression:
        level = defaults.level
    return BackupOptions(chosen_format, chosen, level)
