"""What an attacker sends, one list per kind of input; each list runs against every route that
takes that input (test_routes.py), so the next idea is one more line here."""

from __future__ import annotations

# Backup names in a path: traversal, encodings, other scripts' digits, lookalikes.
NAMES = [
    "..%2F..%2Fetc%2Fpasswd",
    "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "%252e%252e%252fetc%252fpasswd",
    "..%5C..%5Cetc%5Cpasswd",
    "%2Fetc%2Fpasswd",
    "backup-2024-12-09T10-30-45.sql%2F..%2F..%2Fsecret",
    "backup-2024-12-09T10-30-45.sql.partial",
    "backup-2024-12-09T10-30-45.sql.json",
    "backup-2024-12-09T10-30-45.sql.pin",
    "backup-٢٠٢٤-12-09T10-30-45.sql",  # Arabic-Indic digits
    "backup-\uff12\uff10\uff12\uff14-12-09T10-30-45.sql",  # fullwidth digits
    "backup-2024-12-09T10-30-45.SQL",
    "backup-2024-12-09T10-30-45-1.sql",  # make_name never writes -1
    "backup-2024-12-09T10-30-45-01.sql",
    "backup-2024-13-09T10-30-45.sql",
    "backup-2024-02-30T10-30-45.sql",
    "backup-2024-12-09T10-30-45.sql%20",
    "pgkeep-audit.jsonl",
    "pgkeep-jobs.json",
    "a" * 300,
    "%C0%AE%C0%AE%C0%AFetc",  # overlong UTF-8
]

# Authorization headers that must all be refused with 401.
BAD_AUTHORIZATION = [
    "",
    "Bearer",
    "Bearer ",
    "Basic dXNlcjpwYXNz",
    "Token abc",
    "Bearerabc",
    "Bearer not.a.jwt",
    "Bearer eyJhbGciOiJub25lIn0.eyJyb2xlIjoiT1dORVIiLCJleHAiOjk5OTk5OTk5OTl9.",
]

# Bodies for the routes that take JSON; none may be accepted.
CREATE_BODIES = [
    {"format": "tar"},
    {"compression": "lz4"},
    {"level": 99},
    {"format": "custom", "compression": "zstd"},
    {"unknown": 1},
    {"level": "9"},
]
VERIFY_BODIES = [{"restore": "yes"}, {"restore": 1}, {"restore": "true"}, {"extra": True}]
RESTORE_BODIES = [
    {"targetDatabase": "x", "replace": "yes", "confirm": "x"},
    {"targetDatabase": "x", "replace": 1, "confirm": "x"},
    {"targetDatabase": "x", "replace": "true", "confirm": "x"},
    {"targetDatabase": ["x"]},
    {"targetDatabase": "x", "confirm": "x" * 100},
]

# Restore targets refused before any work starts, whatever else the body says.
RESTORE_TARGETS = [
    "postgres",
    "template0",
    "template1",
    "pgkeep_verify_abc",
    "pgkeep_restore_abc",
    "bad name",
    "a;drop",
    "db\n",
    "1abc",
    "db٣",
    "x" * 64,
]
