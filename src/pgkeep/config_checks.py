"""Checks of the settings that need several of them at once, run when they are loaded
(config.load_settings); each raises ConfigError with one line naming the setting."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

from pydantic import SecretStr, ValidationError

from pgkeep import config_file
from pgkeep.errors import ConfigError


class Settings(Protocol):
    """The settings these checks read (config.Settings)."""

    jwt_secret: SecretStr | None
    signing_key: SecretStr | None
    signing_keys_old: tuple[SecretStr, ...]
    schedule: str | None
    verify_schedule: str | None
    notify_urls: tuple[str, ...]
    notify_secret: SecretStr | None
    backup_dir: Path

    @property
    def algorithms(self) -> tuple[str, ...]: ...


HMAC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})
PUBLIC_KEY_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
# RFC 7518 §3.2: an HMAC key at least as long as the hash output.
MIN_SECRET_BYTES = {"HS256": 32, "HS384": 48, "HS512": 64}
_PLACEHOLDER_WORDS = ("change", "secret", "example", "placeholder", "password", "xxxx", "todo")


def where(exc: ValidationError, overrides: dict[str, object]) -> str:
    """One line naming what is wrong: the setting, or the file, line and key."""
    error = exc.errors()[0]
    loc = tuple(error["loc"])
    if not loc:
        return f"PGKEEP_*: {error['msg']}"
    name = str(loc[0])
    path = overrides.get("config") or os.environ.get("PGKEEP_CONFIG")
    from_env = f"PGKEEP_{name.upper()}" in os.environ or name in overrides
    if path and not from_env:
        return f"{config_file.locate(Path(str(path)), loc)}: {error['msg']}"
    return f"PGKEEP_{name.upper()}: {error['msg']}"


def secrets(settings: Settings) -> None:
    if settings.jwt_secret is not None:
        minimum = max(MIN_SECRET_BYTES.get(a, 32) for a in settings.algorithms)
        _random(
            "PGKEEP_JWT_SECRET",
            settings.jwt_secret,
            minimum,
            f"for {'/'.join(settings.algorithms)}",
        )
    if settings.signing_key is not None:
        _random("PGKEEP_SIGNING_KEY", settings.signing_key, 32, "")
    for old in settings.signing_keys_old:
        _random("PGKEEP_SIGNING_KEYS_OLD", old, 32, "each")


def _random(setting: str, value: SecretStr, minimum: int, what: str) -> None:
    """Refuse short or placeholder secrets, naming the setting and never the value."""
    secret = value.get_secret_value()
    if len(secret.encode()) < minimum:
        raise ConfigError(
            f"{setting}: must be at least {minimum} bytes {what} ".replace("  ", " ")
            + "(try: python3 -c 'import secrets; print(secrets.token_urlsafe(48))')"
        )
    lowered = secret.lower()
    if len(set(secret)) < 8 or any(word in lowered for word in _PLACEHOLDER_WORDS):
        raise ConfigError(f"{setting}: looks like a placeholder; use a random value")


def algorithms(settings: Settings) -> None:
    algorithms = set(settings.algorithms)
    allowed = HMAC_ALGORITHMS if settings.jwt_secret is not None else PUBLIC_KEY_ALGORITHMS
    refused = sorted(algorithms - allowed)
    if refused:
        kind = "PGKEEP_JWT_SECRET" if settings.jwt_secret is not None else "a public key"
        raise ConfigError(
            f"PGKEEP_JWT_ALGORITHMS: {', '.join(refused)} not allowed with {kind}; "
            f"choose from {', '.join(sorted(allowed))}"
        )


def schedules_and_alerts(settings: Settings) -> None:
    from pgkeep.core.schedule import parse

    if settings.schedule:
        parse(settings.schedule, "PGKEEP_SCHEDULE")
    if settings.verify_schedule:
        parse(settings.verify_schedule, "PGKEEP_VERIFY_SCHEDULE")
    webhooks = [u for u in settings.notify_urls if u.startswith(("http://", "https://"))]
    if webhooks and settings.notify_secret is None:
        raise ConfigError("PGKEEP_NOTIFY_SECRET: required to sign webhooks in PGKEEP_NOTIFY_URLS")


def backup_dir(settings: Settings, web_dir: Path) -> None:
    where = settings.backup_dir.resolve()
    if where == web_dir.resolve() or web_dir.resolve() in where.parents:
        raise ConfigError("PGKEEP_BACKUP_DIR: must not be inside the served web directory")
