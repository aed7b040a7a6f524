"""The one exception tree of pgkeep; the HTTP edge and the CLI each render it in one place.

PgkeepError
├── NotFound              a named backup, job or file does not exist
├── Conflict              the request collides with work already under way
├── Cancelled             the work was cancelled on request
├── InvalidInput          a name or a body that is not acceptable
│   └── Unprocessable     well-formed, not servable: a reused Idempotency-Key, an absent table
├── Corrupt               a backup's bytes do not match its manifest, or do not decode
├── Untrusted             a backup without a manifest signed by this service: never restored
├── NoIdentity            an encrypted backup that none of the configured age identities opens
├── Busy                  too much work queued already; try again later
├── Unavailable           something the work needs (a server, a store) cannot be reached now
├── AuthError             no credentials, or credentials that do not check out
│   └── Forbidden         valid credentials without the required role
├── DumpFailed            pg_dump failed (exit code, stderr tail)
├── RestoreFailed         pg_restore or psql failed (exit code, stderr tail)
├── ToolError             a PostgreSQL client tool is missing or too old
├── DatabaseUnavailable   the target database cannot be reached
├── StorageError          the backup storage failed to read, write or delete
│   ├── InsufficientStorage   not enough free space for the next backup
│   └── PartlyDeleted     a delete that could not reach every store holding the backup
└── ConfigError           a setting is missing or unacceptable
"""


class PgkeepError(Exception):
    """Root of every error pgkeep raises on purpose.

    `message` is one line naming the object; `details` is optional extra text
    (for example the tail of a tool's stderr) that is safe to show to a client.
    """

    def __init__(self, message: str, details: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class NotFound(PgkeepError):
    pass


class Conflict(PgkeepError):
    pass


class Cancelled(PgkeepError):
    pass


class InvalidInput(PgkeepError):
    pass


class Unprocessable(InvalidInput):
    pass


class Corrupt(PgkeepError):
    pass


class Untrusted(PgkeepError):
    pass


class NoIdentity(PgkeepError):
    """Never "damaged": the bytes may be perfect, pgkeep just lacks the private key."""


class Busy(PgkeepError):
    """Refused for load; `retry_after` says when trying again makes sense (seconds)."""

    def __init__(self, message: str, details: str = "", retry_after: int = 5) -> None:
        super().__init__(message, details)
        self.retry_after = retry_after


class Unavailable(PgkeepError):
    pass


class AuthError(PgkeepError):
    pass


class Forbidden(AuthError):
    pass


class _ToolFailed(PgkeepError):
    """A PostgreSQL tool ran and failed; keeps the exit code beside the message."""

    def __init__(self, message: str, details: str = "", exit_code: int | None = None) -> None:
        super().__init__(message, details)
        self.exit_code = exit_code


class DumpFailed(_ToolFailed):
    pass


class RestoreFailed(_ToolFailed):
    pass


class ToolError(PgkeepError):
    pass


class DatabaseUnavailable(PgkeepError):
    pass


class StorageError(PgkeepError):
    pass


class InsufficientStorage(StorageError):
    pass


class PartlyDeleted(StorageError):
    """`stores`: those the backup was removed from (rendered beside error and details)."""

    def __init__(self, message: str, details: str = "", stores: list[str] | None = None) -> None:
        super().__init__(message, details)
        self.stores = stores or []


class ConfigError(PgkeepError):
    pass
