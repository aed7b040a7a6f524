"""pgkeep: PostgreSQL backups you can trust, as a service."""

__version__ = "0.1.0"
