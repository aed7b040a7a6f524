"""A connection to a PostgreSQL database (a target's, a server's, the control database):
parsed once from its URL, password held apart ("target" is the glossary's: a database
and its backups).

The password never goes into a child's argv: tools get a conninfo string
without it, and the password through `PGPASSWORD` in their environment.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from pgkeep.errors import ConfigError
from pgkeep.postgres.process import child_env, session_options

_URL_PASSWORD = re.compile(r"(://[^:/@\s]*:)[^@\s]*@")
_KEYWORD_PASSWORD = re.compile(r"(password\s*=\s*)('[^']*'|\S+)", re.IGNORECASE)
DEFAULT_CONNECT_TIMEOUT = "10"


@dataclass(frozen=True)
class Connection:
    dbname: str
    conninfo: str  # without the password; safe for argv and logs
    password: str | None = field(default=None, repr=False)

    @classmethod
    def from_url(cls, url: str) -> Connection:
        try:
            params = {k: str(v) for k, v in conninfo_to_dict(url).items()}
        except psycopg.ProgrammingError:
            raise ConfigError("PGKEEP_DATABASE_URL: not a valid PostgreSQL URL") from None
        if not params.get("dbname"):
            raise ConfigError("PGKEEP_DATABASE_URL: must name a database (…/DBNAME)")
        if not all(p.isdigit() for p in params.get("port", "5432").split(",")):
            raise ConfigError("PGKEEP_DATABASE_URL: the port must be a number")
        password = params.pop("password", None)
        params.setdefault("connect_timeout", DEFAULT_CONNECT_TIMEOUT)
        return cls(params["dbname"], make_conninfo(**params), password)

    def with_dbname(self, dbname: str) -> Connection:
        """The same server and credentials, another database."""
        params = {k: str(v) for k, v in conninfo_to_dict(self.conninfo).items()}
        params["dbname"] = dbname
        return Connection(dbname, make_conninfo(**params), self.password)

    @property
    def address(self) -> str:
        """host:port for messages (never the password)."""
        params = conninfo_to_dict(self.conninfo)
        return f"{params.get('host', 'localhost')}:{params.get('port', '5432')}"

    def child_env(self, server_major: int | None = None) -> dict[str, str]:
        """Environment for pg_dump & co.: nothing of pgkeep's, our password alone and,
        given the server's major, the session options (PGOPTIONS; `options` in the
        conninfo, when the URL has it, wins over them)."""
        pg = {"PGPASSWORD": self.password} if self.password is not None else {}
        options = session_options(server_major) if server_major is not None else ""
        if options:
            pg["PGOPTIONS"] = options
        return child_env(**pg)

    def redact(self, text: str) -> str:
        """Remove this target's password, and anything shaped like one, from text."""
        if self.password:
            text = text.replace(self.password, "***")
        text = _URL_PASSWORD.sub(r"\1***@", text)
        return _KEYWORD_PASSWORD.sub(r"\1***", text)
