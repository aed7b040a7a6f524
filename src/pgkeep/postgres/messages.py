"""What a failed PostgreSQL tool said, cause first: pg_dump --verbose writes dozens of lines
of progress before its error, so the error, the alert and the console lead with the
tool's own `error:` lines and the server's message; the whole log follows, for the job
record."""

from __future__ import annotations

import re

_CAUSE = re.compile(
    r"^(?:pg_dump(?:all)?|pg_restore|psql)(?::[^:]*)?: (?:error|detail|hint): |"
    r"(?:ERROR|FATAL|PANIC|DETAIL|HINT):  "
)
MAX_CAUSE = 300


def cause_first(log: str) -> tuple[str, str]:
    """(the cause, one line; the details: the cause's lines, then the whole log)."""
    lines = log.splitlines()
    causes = [line.strip() for line in lines if _CAUSE.search(line)]
    if not causes:
        return "", log
    cause = causes[0]
    cause = re.sub(r"^(?:pg_dump(?:all)?|pg_restore|psql)(?::[^:]*)?: error: ", "", cause)
    details = "\n".join(causes[-8:]) + "\n\n" + log
    return cause[:MAX_CAUSE], details
