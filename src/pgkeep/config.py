"""Settings: every `PGKEEP_*` environment variable, read and validated once at start.

Loading raises `ConfigError` with one line naming the offending setting, so a
bad configuration stops the process before it serves anything.

One flat declaration of every setting, as the README's table lists them (a test keeps
the two equal); the checks that need several of them at once are config_checks.py, the
configuration file's own parts config_file.py.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from pgkeep import config_checks, config_file
from pgkeep.config_file import ServerConfig, StoreConfig, TargetConfig
from pgkeep.core import encryption
from pgkeep.core.drift import DriftPolicy
from pgkeep.core.models import BackupOptions, Compression, DumpFormat
from pgkeep.core.retention import RetentionPolicy
from pgkeep.core.signing import hkdf
from pgkeep.errors import ConfigError, InvalidInput

logger = logging.getLogger(__name__)

WEB_DIR = Path(__file__).parent / "web"
SIGNING_INFO = b"pgkeep manifest signing v1"


class Settings(BaseSettings):
    """The service's configuration; see the README's settings table for each field."""

    model_config = SettingsConfigDict(env_prefix="PGKEEP_", frozen=True, extra="ignore")

    config: Path | None = None
    database_url: SecretStr | None = None
    targets: dict[str, TargetConfig] = Field(default_factory=dict)
    servers: dict[str, ServerConfig] = Field(default_factory=dict)
    default_target: str | None = None
    control_database_url: SecretStr | None = None
    state_dir: Path | None = None
    job_lease_seconds: float = Field(default=30.0, ge=4, le=3600)
    max_concurrent_dumps: int = Field(default=2, ge=1, le=64)
    dump_timeout: timedelta = timedelta(hours=24)
    lock_wait_timeout: timedelta = timedelta(minutes=5)
    backup_dir: Path = Path("server-backups")
    storage_url: str | None = None
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    s3_path_style: bool | None = None
    s3_max_parts: int = Field(default=10_000, ge=1, le=10_000)
    copy_to: Annotated[tuple[str, ...], NoDecode] = ()
    copy_backoff_seconds: float = Field(default=5.0, gt=0, le=3600)
    age_recipients: Annotated[tuple[str, ...], NoDecode] = ()
    age_identity_file: Path | None = None
    stores: dict[str, StoreConfig] = Field(default_factory=dict)
    jwt_secret: SecretStr | None = None
    jwt_public_key: str | None = None
    jwt_jwks_url: str | None = None
    jwt_algorithms: Annotated[tuple[str, ...], NoDecode] = ()
    jwt_role_claim: str = "role"
    required_role: str = "OWNER"
    jwt_audience: str | None = None
    jwt_issuer: str | None = None
    jwt_leeway_seconds: int = Field(default=30, ge=0, le=300)
    jwt_max_lifetime: timedelta | None = None
    signing_key: SecretStr | None = None
    signing_keys_old: Annotated[tuple[SecretStr, ...], NoDecode] = ()
    restore_replace_allow: Annotated[tuple[str, ...], NoDecode] = ()
    verify_concurrency: int = Field(default=2, ge=1, le=64)
    verify_queue: int = Field(default=16, ge=0, le=10_000)
    job_retention: timedelta = timedelta(days=7)
    header_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    shutdown_grace_seconds: float = Field(default=30.0, ge=0, le=86400)
    max_connections: int | None = Field(default=None, ge=8)
    max_body_bytes: int = Field(default=64 * 1024, ge=1024, le=16 * 1024 * 1024)
    retention_days: int = Field(default=30, ge=0)
    retention_keep_last: int = Field(default=0, ge=0)
    retention_keep_daily: int = Field(default=0, ge=0)
    retention_keep_weekly: int = Field(default=0, ge=0)
    retention_keep_monthly: int = Field(default=0, ge=0)
    retention_keep_yearly: int = Field(default=0, ge=0)
    retention_min_keep: int = Field(default=1, ge=0)
    pg_bin_dir: Path | None = None
    globals_passwords: bool = True
    default_format: DumpFormat = DumpFormat.PLAIN
    default_compression: Compression = Compression.NONE
    default_level: int | None = None
    verify_database_url: SecretStr | None = None
    rehearsal_database_urls: Annotated[tuple[SecretStr, ...], NoDecode] = ()
    restore_jobs: int = Field(default=1, ge=1, le=64)
    row_count_max_bytes: int = Field(default=50 * 1024**3, ge=0)
    tmp_dir: Path | None = None
    min_free_bytes: int = Field(default=64 * 1024 * 1024, ge=0)
    stale_after: timedelta | None = None
    drift_alarms: bool = True
    drift_rows_percent: float = Field(default=50.0, gt=0, le=100)
    drift_size_percent: float = Field(default=50.0, gt=0, le=100)
    drift_min_rows: int = Field(default=1000, ge=0)
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

    @field_validator(
        "jwt_algorithms",
        "notify_urls",
        "metrics_allow",
        "signing_keys_old",
        "restore_replace_allow",
        "copy_to",
        mode="before",
    )
    @classmethod
    def _split_algorithms(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    _endpoint = field_validator("s3_endpoint_url")(config_file.endpoint)
    _recipients = field_validator("age_recipients", mode="before")(config_file.recipients)
    _duration = field_validator(
        "stale_after", "jwt_max_lifetime", "job_retention", "dump_timeout", "lock_wait_timeout",
        mode="before",
    )(config_file.duration)  # fmt: skip
    _rehearsals = field_validator("rehearsal_database_urls", mode="before")(config_file.urls)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Explicit values, then the environment, then PGKEEP_CONFIG's file."""
        path = config_file.config_path(init_settings)
        if path is None:
            return init_settings, env_settings
        return init_settings, env_settings, config_file.FileSource(settings_cls, path)

    def for_target(self, overrides: config_file.Overrides) -> Settings:
        """These settings with a target's (or its server's) overrides applied."""
        return self.model_copy(update=overrides.values())

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

    def age_keys(self) -> encryption.Keys:
        """The recipients new backups are encrypted to, and the identities that open them
        (read from PGKEEP_AGE_IDENTITY_FILE; errors name the file, never its content)."""
        identities: tuple[Any, ...] = ()
        path = self.age_identity_file
        if path is not None:
            try:
                text = path.read_text()
            except (OSError, UnicodeDecodeError) as exc:
                reason = getattr(exc, "strerror", None) or "not text"
                raise ConfigError(
                    f"PGKEEP_AGE_IDENTITY_FILE: cannot read {str(path)!r}: {reason}"
                ) from None
            try:
                identities = encryption.parse_identities(text)
            except ValueError as exc:
                raise ConfigError(f"PGKEEP_AGE_IDENTITY_FILE: {str(path)!r}: {exc}") from None
            mode = path.stat().st_mode & 0o077
            if mode:
                logger.warning(
                    "PGKEEP_AGE_IDENTITY_FILE %s is readable by others (mode %04o); chmod 600 it",
                    path,
                    path.stat().st_mode & 0o777,
                )
        return encryption.Keys(self.age_recipients, identities)

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

    def drift_policy(self) -> DriftPolicy:
        return DriftPolicy(
            enabled=self.drift_alarms,
            rows_percent=self.drift_rows_percent,
            size_percent=self.drift_size_percent,
            min_rows=self.drift_min_rows,
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

    def signing_keys(self) -> tuple[bytes, list[bytes]]:
        """The manifest signing key and the old ones still accepted.

        PGKEEP_SIGNING_KEY if set, else a key derived (HKDF) from PGKEEP_JWT_SECRET,
        so a deployment configured before signing keeps working. Each old value is
        accepted as given and as derived, so a former JWT secret works there too.
        """
        if self.signing_key is not None:
            current = self.signing_key.get_secret_value().encode()
        elif self.jwt_secret is not None:
            current = hkdf(self.jwt_secret.get_secret_value().encode(), SIGNING_INFO)
        else:
            raise ConfigError(
                "PGKEEP_SIGNING_KEY: not set, and there is no PGKEEP_JWT_SECRET to derive it "
                "from (tokens checked with a public key or JWKS, or none); manifests are "
                "signed with it; try: python3 -c 'import secrets; print(secrets.token_urlsafe(48))'"
            )
        old = []
        for value in self.signing_keys_old:
            raw = value.get_secret_value().encode()
            old += [raw, hkdf(raw, SIGNING_INFO)]
        return current, old

    def check_for_serving(self) -> None:
        """Refuse to serve without a target, a way to check tokens and a signing key."""
        if not self.targets and not self.servers:
            self.require_database_url()
        sources = [self.jwt_secret, self.jwt_public_key, self.jwt_jwks_url]
        if sum(source is not None for source in sources) != 1:
            raise ConfigError(
                "PGKEEP_JWT_SECRET: set exactly one of PGKEEP_JWT_SECRET, "
                "PGKEEP_JWT_PUBLIC_KEY or PGKEEP_JWT_JWKS_URL"
            )
        self.public_key_pem()
        self.signing_keys()


def load_settings(**overrides: object) -> Settings:
    """Build Settings from the environment and PGKEEP_CONFIG (and explicit overrides, for
    tests and the CLI)."""
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise ConfigError(config_checks.where(exc, overrides)) from None
    config_checks.algorithms(settings)
    config_checks.secrets(settings)
    config_checks.backup_dir(settings, WEB_DIR)
    config_checks.schedules_and_alerts(settings)
    settings.age_keys()  # a bad identity file stops the start, naming it
    try:
        settings.default_options()
    except InvalidInput as exc:
        raise ConfigError(f"PGKEEP_DEFAULT_COMPRESSION: {exc.message}", exc.details) from None
    return settings
