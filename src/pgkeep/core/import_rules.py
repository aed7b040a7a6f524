"""What an imported dump (bytes pgkeep did not write: `pgkeep backup import`) may hold.

Every statement must be one pg_dump writes (`refusal`: no roles, no programs, no
`DO`); the loader runs them, owning what it makes until the restore's end. pgkeep's
own session runs only the dump's session settings, its extensions (`CREATE EXTENSION`,
`COMMENT ON EXTENSION`) and, at the very end, `ALTER … OWNER TO` statements, each
matched whole against the one form pg_dump writes (`admin_refusal`,
`owner_statement_refusal`): no argument of them can call a function.
"""

from __future__ import annotations

import re

from pgkeep.core import sqlscan
from pgkeep.core.restore_plan import STATE

_SET_ALLOWED = frozenset(
    {
        "statement_timeout",
        "lock_timeout",
        "idle_in_transaction_session_timeout",
        "transaction_timeout",
        "client_encoding",
        "standard_conforming_strings",
        "check_function_bodies",
        "xmloption",
        "client_min_messages",
        "row_security",
        *STATE,
    }
)
_SELECT_ALLOWED = frozenset(
    {
        "set_config",
        "setval",
        "lo_create",
        "lo_open",
        "lowrite",
        "lo_close",
        "pg_restore_relation_stats",
        "pg_restore_attribute_stats",
    }
)
# pg_dump's schema statements (DROP only with --clean; REFRESH runs as the view's owner).
_DDL = frozenset({"create", "alter", "comment", "grant", "revoke", "security", "drop"})
_ROLE_WORDS = frozenset({"role", "user", "group", "database", "system", "tablespace"})

_NAME = r'(?:"(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)'
_QUALIFIED = rf"{_NAME}(?:\.{_NAME})?"
_ARGS = r'(?:\((?:[^()\'";]|"(?:[^"]|"")*")*\))?'
_OWNER = re.compile(
    rf"ALTER (?:[A-Z]+ ){{1,3}}{_QUALIFIED}{_ARGS}(?: USING [a-z0-9_]+)? OWNER TO {_NAME};"
)
_LARGE_OBJECT = re.compile(rf"ALTER LARGE OBJECT [0-9]+ OWNER TO {_NAME};")
_ADMIN_EXACT = (
    re.compile(r"SELECT pg_catalog\.set_config\('search_path', '', false\);"),
    re.compile(rf"CREATE EXTENSION IF NOT EXISTS {_NAME} WITH SCHEMA {_NAME};"),
    re.compile(rf"CREATE EXTENSION IF NOT EXISTS {_NAME};"),
    re.compile(rf"COMMENT ON EXTENSION {_NAME} IS '(?:[^']|'')*';"),
)


def refusal(statement: sqlscan.Statement) -> str:
    """What is wrong with a statement in an imported dump ("" when pg_dump writes such
    statements): checked for every statement; the loader runs them."""
    words = statement.words
    first = words[0] if words else ""
    if first == "set":
        return "" if len(words) > 1 and words[1] in _SET_ALLOWED else "a SET of another setting"
    if first == "select":
        allowed = words[1:2] == ("pg_catalog",) and words[2:3] and words[2] in _SELECT_ALLOWED
        return "" if allowed else "a SELECT"
    if first == "copy":
        return "" if statement.last_words[-2:] == ("from", "stdin") else "a COPY"
    if first == "insert":
        return "" if words[1:2] == ("into",) else "an INSERT"
    if first == "refresh":
        return "" if words[1:2] == ("materialized",) else "a REFRESH"
    if first not in _DDL:
        return f"{first.upper() or 'a statement'}"
    if first in ("create", "alter", "drop") and words[1:2] and words[1] in _ROLE_WORDS:
        return f"{first.upper()} {words[1].upper()}"
    if first in ("grant", "revoke") and "on" not in words:
        return f"a {first.upper()} of a role"
    return ""


def owner_statement_refusal(statement: sqlscan.Statement) -> str:
    """An `ALTER … OWNER TO` pgkeep's session would run at the end: only pg_dump's own form,
    whole (a name, maybe a signature, the owner), nothing else in it."""
    text = statement.text
    if text and (_OWNER.fullmatch(text) or _LARGE_OBJECT.fullmatch(text)):
        return ""
    return "an ALTER … OWNER TO of another form than pg_dump's"


def admin_refusal(statement: sqlscan.Statement) -> str:
    """What an imported dump may not have pgkeep's own session run: anything but pg_dump's
    session settings and its extensions, each in pg_dump's own form, whole."""
    words = statement.words
    if words[:1] == ("set",):
        return refusal(statement)
    text = statement.text
    if text and any(form.fullmatch(text) for form in _ADMIN_EXACT):
        return ""
    first = words[0] if words else ""
    return f"{first.upper() or 'a statement'} (only settings and extensions)"
