"""Settings: every `PGKEEP_*` environment variable, read and validated once at start.

Loading raises `ConfigError` with one line naming the offending setting, so a
bad configuration stops the process before it serves anything.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from pgkeep.core.models import BackupOptions, Compression, DumpFormat
from pgkeep.core.retention import RetentionPolicy
from pgkeep.errors import ConfigError, InvalidInput

HMAC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})
PUBLIC_KEY_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
# RFC 7518 §3.2: an HMAC key at least as long as the hash output.
MIN_SECRET_BYTES = {"HS256": 32, "HS384": 48, "HS512": 64}
_PLACEHOLDER_WORDS = ("change", "secret", "example", "placeholder", "password", "xxxx", "todo")
WEB_DIR = Path(__file__).parent / "web"


class Settings(BaseSettings):
    """The service's configuration; see the README's settings table for each field."""

    model_config = SettingsConfigDict(env_prefix="PGKEEP_", frozen=True, extra="ignore")

    database_url: SecretStr | None = None
    backup_dir: Path = Path("server-backups")
    jwt_secret: SecretStr | None = None
    jwt_public_key: str | None = None
    jwt_jwks_url: str | None = None
    jwt_algorithms: Annotated[tuple[str, ...], NoDecode] = ()
    jwt_role_claim: str = "role"
    required_role: str = "OWNER"
    jwt_audience: str | None = None
    jwt_issuer: str | None = None
    jwt_leeway_seconds: int = Field(default=30, ge=0, le=300)
    retention_days: int = Field(default=30, ge=0)
    retention_keep_last: int = Field(default=0, ge=0)
    retention_keep_daily: int = Field(default=0, ge=0)
    retention_keep_weekly: int = Field(default=0, ge=0)
    retention_keep_monthly: int = Field(default=0, ge=0)
    retention_keep_yearly: int = Field(default=0, ge=0)
    retention_min_keep: int = Field(default=1, ge=0)
    pg_bin_dir: Path | None = None
    default_format: DumpFormat = DumpFormat.PLAIN
    default_compression: Compression = Compression.NONE
    default_level: int | None = None
    verify_database_url: SecretStr | None = None
    restore_jobs: int = Field(default=1, ge=1, le=64)
    row_count_max_bytes: int = Field(default=50 * 1024**3, ge=0)
    tmp_dir: Path | None = None
    min_free_bytes: int = Field(default=0, ge=0)
    stale_after: timedelta | None = None
    notify_urls: Annotated[tuple[str, ...], NoDecode] = ()
    notify_secret: SecretStr | None = None
    notify_success: bool = False
    schedule: str | None = None
    schedule_database: str = "postgres"
    scheduler_interval_seconds: float = Field(default=15.0, gt=0, le=300)
    verify_schedule: str | None = None
    metrics_token: SecretStr | None = None
    metrics_allow: Annotated[tuple[str, ...], NoDecode] = ()
    audit_log: Path | None = None
    log_format: Literal["text", "json"] = "text"
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    log_level: str = "INFO"

    @field_validator("jwt_algorithms", "notify_urls", "metrics_allow", mode="before")
    @classmethod
    def _split_algorithms(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("stale_after", mode="before")
    @classmethod
    def _duration(cls, value: object) -> object:
        """Also accept 90s / 30m / 26h / 2d, besides seconds and ISO 8601 (PT26H)."""
        if isinstance(value, str) and (m := re.fullmatch(r"(\d+)([smhd])", value.strip())):
            return timedelta(seconds=int(m[1]) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m[2]])
        return value

    @property
    def algorithms(self) -> tuple[str, ...]:
        """The pinned JWT algorithms: the configured ones, else the key type's default."""
        if self.jwt_algorithms:
            return self.jwt_algorithms
        return ("HS256",) if self.jwt_secret is not None else ("RS256",)

    def public_key_pem(self) -> str | None:
        """The RS/ES public key: PEM text, or read from the file the setting names."""
        value = self.jwt_public_key
        if value is None or "-----BEGIN" in value:
            return value
        try:
            return Path(value).read_text()
        except OSError as exc:
            raise ConfigError(f"PGKEEP_JWT_PUBLIC_KEY: cannot read key file {value!r}") from exc

    def retention_policy(self) -> RetentionPolicy:
        return RetentionPolicy(
            max_age_days=self.retention_days,
            keep_last=self.retention_keep_last,
            keep_daily=self.retention_keep_daily,
            keep_weekly=self.retention_keep_weekly,
            keep_monthly=self.retention_keep_monthly,
            keep_yearly=self.retention_keep_yearly,
            min_keep=self.retention_min_keep,
        )

    def default_options(self) -> BackupOptions:
        """Options for a create that names none (the spec's: plain, uncompressed)."""
        return BackupOptions(self.default_format, self.default_compression, self.default_level)

    def require_database_url(self) -> str:
        if self.database_url is None or not self.database_url.get_secret_value():
            raise ConfigError("PGKEEP_DATABASE_URL: not set; it names the database to back up")
        return self.database_url.get_secret_value()

    def require_signing_secret(self) -> str:
        if self.jwt_secret is None:
            raise ConfigError("PGKEEP_JWT_SECRET: not set; `pgkeep token` signs HS256 tokens")
        return self.jwt_secret.get_secret_value()

    def check_for_serving(self) -> None:
        """Refuse to serve without a target and a way to check tokens."""
        self.require_database_url()
        sources = [self.jwt_secret, self.jwt_public_key, self.jwt_jwks_url]
        if sum(source is not None for source in sources) != 1:
            raise ConfigError(
                "PGKEEP_JWT_SECRET: set exactly one of PGKEEP_JWT_SECRET, "
                "PGKEEP_JWT_PUBLIC_KEY or PGKEEP_JWT_JWKS_URL"
            )
        self.public_key_pem()


def load_settings(**overrides: object) -> Settings:
    """Build Settings from the environment (and explicit overrides, for tests and the CLI)."""
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        error = exc.errors()[0]
        name = "PGKEEP_" + str(error["loc"][0]).upper() if error["loc"] else "PGKEEP_*"
        raise ConfigError(f"{name}: {error['msg']}") from None
    _check_algorithms(settings)
    _check_secret(settings)
    _check_backup_dir(settings)
    _check_schedules_and_alerts(settings)
    try:
        settings.default_options()
    except InvalidInput as exc:
        raise ConfigError(f"PGKEEP_DEFAULT_COMPRESSION: {exc.message}", exc.details) from None
    return settings


def _check_secret(settings: Settings) -> None:
    if settings.jwt_secret is None:
        return
    secret = settings.jwt_secret.get_secret_value()
    minimum = max(MIN_SECRET_BYTES.get(a, 32) for a in settings.algorithms)
    if len(secret.encode()) < minimum:
        raise ConfigError(
            f"PGKEEP_JWT_SECRET: must be at least {minimum} bytes for "
            f"{'/'.join(settings.algorithms)} "
            "(try: python3 -c 'import secrets; print(secrets.token_urlsafe(48))')"
        )
    lowered = secret.lower()
    if len(set(secret)) < 8 or any(word in lowered for word in _PLACEHOLDER_WORDS):
        raise ConfigError("PGKEEP_JWT_SECRET: looks like a placeholder; use a random value")


def _check_algorithms(settings: Settings) -> None:
    algorithms = set(settings.algorithms)
    allowed = HMAC_ALGORITHMS if settings.jwt_secret is not None else PUBLIC_KEY_ALGORITHMS
    refused = sorted(algorithms - allowed)
    if refused:
        kind = "PGKEEP_JWT_SECRET" if settings.jwt_secret is not None else "a public key"
        raise ConfigError(
            f"PGKEEP_JWT_ALGORITHMS: {', '.join(refused)} not allowed with {kind}; "
            f"choose from {', '.join(sorted(allowed))}"
        )


def _check_schedules_and_alerts(settings: Settings) -> None:
    from pgkeep.core.schedule import parse

    if settings.schedule:
        parse(settings.schedule, "PGKEEP_SCHEDULE")
    if settings.verify_schedule:
        parse(settings.verify_schedule, "PGKEEP_VERIFY_SCHEDULE")
    webhooks = [u for u in settings.notify_urls if u.startswith(("http://", "https://"))]
    if webhooks and settings.notify_secret is None:
        raise ConfigError("PGKEEP_NOTIFY_SECRET: required to sign webhooks in PGKEEP_NOTIFY_URLS")


def _check_backup_dir(settings: Settings) -> None:
    backup_dir = settings.backup_dir.resolve()
    if backup_dir == WEB_DIR.resolve() or WEB_DIR.resolve() in backup_dir.parents:
        raise ConfigError("PGKEEP_BACKUP_DIR: must not be inside the served web directory")
