"""The configuration file (PGKEEP_CONFIG, TOML): many targets, servers to discover, overrides.

Top-level keys are the PGKEEP_* settings in lower case without the prefix (the
environment still overrides them). `[targets.NAME]` names one database;
`[servers.KEY]` every database on a server that its globs select, found at start
and before each scheduled run. Both take per-target overrides (schedule,
retention, formats…). A bad file stops the process with one line naming the
file, the line and the key.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Iterable
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from pgkeep.core import encryption
from pgkeep.core.models import Compression, DumpFormat
from pgkeep.errors import ConfigError

TARGET_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.~-]{0,199}", re.ASCII)
_DURATION = re.compile(r"([0-9]+)([smhd])")


def duration(value: object) -> object:
    """Also accept 90s / 30m / 26h / 2d, besides seconds and ISO 8601 (PT26H)."""
    if isinstance(value, str) and (m := _DURATION.fullmatch(value.strip())):
        return timedelta(seconds=int(m[1]) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m[2]])
    return value


def store_prefix(value: object) -> object:
    """A folder in the store: '' (its root) or names joined by '/'; never one that climbs
    out of the store ('..'), starts at its top ('/') or hides ('.x')."""
    if value is None or value == "":
        return value
    if not isinstance(value, str) or not all(TARGET_NAME.fullmatch(p) for p in value.split("/")):
        raise ValueError(
            "must be '' or folder names joined by '/' (letters, digits, _ . ~ -, not "
            "starting with a dot)"
        )
    return value


def endpoint(value: object) -> object:
    """An S3 endpoint: http(s)://host[:port], never with credentials in it."""
    if value is None:
        return value
    parsed = urlparse(str(value))
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ValueError("must be http(s)://host[:port]")
    if parsed.username or parsed.password or parsed.query:
        raise ValueError("credentials do not belong in the URL (use the AWS variables)")
    return value


def recipients(value: object) -> object:
    """PGKEEP_AGE_RECIPIENTS: age1… keys, comma-separated (or a list), where any item may
    instead be the path of a recipients file (one key per line, # comments). Keys are
    kept lower-case, whichever case they were written in."""
    if value is None:
        return value
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)):
        raise ValueError("must be age1… keys, comma-separated, or a recipients file")
    found: list[str] = []
    for raw in (str(i).strip() for i in items):
        if not raw:
            continue
        if raw.lower().startswith(("age1", "age-secret-key-")):  # bech32: either case
            found.append(encryption.parse_recipient(raw))
            continue
        try:
            lines = Path(raw).read_text().splitlines()
        except OSError as exc:
            raise ValueError(
                f"{raw[:200]!a} is neither age1… nor a readable file: {exc.strerror}"
            ) from None
        for number, line in enumerate(lines, 1):
            line = line.strip()
            if line and not line.startswith("#"):
                try:
                    found.append(encryption.parse_recipient(line))
                except ValueError as exc:
                    raise ValueError(f"{raw[:200]!a} line {number}: {exc}") from None
    return tuple(dict.fromkeys(found))


def urls(value: object) -> object:
    """PGKEEP_REHEARSAL_DATABASE_URLS: a JSON list of libpq URLs (a list in TOML), since a
    multi-host URL holds commas. Never echoed: they hold passwords."""
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else []
        except ValueError:
            raise ValueError('must be a JSON list of URLs: ["postgresql://…", …]') from None
    if not isinstance(value, (list, tuple)):
        raise ValueError('must be a list of URLs: ["postgresql://…", …]')
    for item in value:
        text = item.get_secret_value() if isinstance(item, SecretStr) else item
        if not isinstance(text, str) or not text.startswith(("postgresql://", "postgres://")):
            raise ValueError("each item must be a postgresql:// URL")
    return tuple(value)


class RetentionOverrides(BaseModel):
    """The retention rules a target, or a store of copies, may set for itself."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    retention_days: int | None = Field(default=None, ge=0)
    retention_keep_last: int | None = Field(default=None, ge=0)
    retention_keep_daily: int | None = Field(default=None, ge=0)
    retention_keep_weekly: int | None = Field(default=None, ge=0)
    retention_keep_monthly: int | None = Field(default=None, ge=0)
    retention_keep_yearly: int | None = Field(default=None, ge=0)
    retention_min_keep: int | None = Field(default=None, ge=0)

    def retention(self) -> dict[str, Any]:
        """The retention settings set here, for Settings.model_copy(update=…)."""
        return self._set(RetentionOverrides.model_fields)

    def _set(self, names: Iterable[str]) -> dict[str, Any]:
        found = {name: getattr(self, name) for name in names}
        return {name: value for name, value in found.items() if value is not None}


class Overrides(RetentionOverrides):
    """Settings a target (or every target a server has) may set for itself."""

    schedule: str | None = None
    verify_schedule: str | None = None
    default_format: DumpFormat | None = None
    default_compression: Compression | None = None
    default_level: int | None = None
    row_count_max_bytes: int | None = Field(default=None, ge=0)
    stale_after: timedelta | None = None
    drift_alarms: bool | None = None
    drift_rows_percent: float | None = Field(default=None, gt=0, le=100)
    drift_size_percent: float | None = Field(default=None, gt=0, le=100)
    drift_min_rows: int | None = Field(default=None, ge=0)
    dump_timeout: timedelta | None = None
    storage_url: str | None = None
    copy_to: tuple[str, ...] | None = None
    age_recipients: tuple[str, ...] | None = None
    rehearsal_database_urls: tuple[SecretStr, ...] | None = None

    _recipients = field_validator("age_recipients", mode="before")(recipients)
    _rehearsals = field_validator("rehearsal_database_urls", mode="before")(urls)

    _duration = field_validator("stale_after", "dump_timeout", mode="before")(duration)

    def values(self) -> dict[str, Any]:
        """The overrides that are set, for Settings.model_copy(update=…)."""
        return self._set(Overrides.model_fields)


class TargetConfig(Overrides):
    """`[targets.NAME]`: one database."""

    database_url: SecretStr
    prefix: str | None = Field(
        default=None, description="folder in the store; default the target's name, '' the root"
    )

    _prefix = field_validator("prefix")(store_prefix)


class StoreConfig(RetentionOverrides):
    """`[stores.NAME]`: a store on another endpoint, account or region, for copies."""

    url: str
    endpoint_url: str | None = None
    region: str | None = None
    profile: str | None = None  # AWS credentials by profile, never inline
    path_style: bool | None = None

    _endpoint = field_validator("endpoint_url")(endpoint)


class ServerConfig(Overrides):
    """`[servers.KEY]`: every database on a server the globs select, and optionally globals."""

    url: SecretStr
    include: tuple[str, ...] = ("*",)
    exclude: tuple[str, ...] = ()
    globals: bool = False
    globals_passwords: bool | None = None  # default: the top-level setting

    def values(self) -> dict[str, Any]:
        found = super().values()
        if self.globals_passwords is not None:
            found["globals_passwords"] = self.globals_passwords
        return found


def read(path: Path) -> dict[str, Any]:
    """The file's tables, or ValueError with the line of a syntax error."""
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except OSError as exc:
        raise ValueError(f"{path}: cannot read it: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: {exc}") from None


def locate(path: Path, loc: tuple[str | int, ...]) -> str:
    """`file:line: key` for a setting's location, as well as the text allows."""
    key = ".".join(str(part) for part in loc)
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return f"{path}: {key}"
    table, name = [str(p) for p in loc[:-1]], str(loc[-1])
    current: list[str] = []
    for number, line in enumerate(lines, 1):
        text = line.split("#", 1)[0].strip()
        header = re.fullmatch(r"\[([^\]]+)\]", text)
        if header:
            current = [part.strip().strip('"') for part in header[1].split(".")]
            if current == [*table, name]:
                return f"{path}:{number}: {key}"
            continue
        if current == table and re.match(rf'"?{re.escape(name)}"?\s*=', text):
            return f"{path}:{number}: {key}"
    return f"{path}: {key}"


class FileSource(PydanticBaseSettingsSource):
    """The TOML file's top-level keys (settings) and tables (targets, servers)."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path) -> None:
        super().__init__(settings_cls)
        self.path = path
        try:
            self.data = read(path)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        unknown = sorted(set(self.data) - set(settings_cls.model_fields) - {"config"})
        if unknown:
            raise ConfigError(f"{locate(path, (unknown[0],))}: not a setting")

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self.data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self.data)


def config_path(init_settings: PydanticBaseSettingsSource) -> Path | None:
    given = getattr(init_settings, "init_kwargs", {}).get("config") or os.environ.get(
        "PGKEEP_CONFIG"
    )
    return Path(given) if given else None
