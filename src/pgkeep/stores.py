"""Stores from settings: the local directory, `file:///path`, `s3://bucket/prefix`, or a named
`[stores.NAME]`, each under a target's prefix.

S3 credentials come from the standard AWS chain (AWS_ACCESS_KEY_ID and
AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, profiles, instance roles), or a named
store's `profile`; never from a URL, and they never reach a log, an error or a
manifest. With an endpoint (PGKEEP_S3_ENDPOINT_URL), path-style addressing is used
unless PGKEEP_S3_PATH_STYLE says otherwise.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

import boto3
from botocore.config import Config

from pgkeep.config import Settings
from pgkeep.config_file import StoreConfig
from pgkeep.core.ports import Storage
from pgkeep.errors import ConfigError, StorageError
from pgkeep.storage import LocalStorage
from pgkeep.storage.s3 import S3Storage

if TYPE_CHECKING:
    from types_boto3_s3.client import S3Client


@dataclass(frozen=True)
class Endpoint:
    url: str | None
    region: str | None
    profile: str | None
    path_style: bool | None


class Stores:
    """Opens stores, sharing one S3 client per endpoint, region and profile."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._clients: dict[Endpoint, S3Client] = {}
        self._lock = threading.Lock()

    def primary(self, settings: Settings, prefix: str) -> Storage:
        """A target's own store: its storage_url, else PGKEEP_BACKUP_DIR."""
        if settings.storage_url:
            return self.open(settings.storage_url, prefix, "PGKEEP_STORAGE_URL")
        return _local(
            settings.backup_dir / prefix if prefix else settings.backup_dir, "PGKEEP_BACKUP_DIR"
        )

    def open(self, url_or_name: str, prefix: str, setting: str) -> Storage:
        """The store a URL or a `[stores.NAME]` names, under `prefix`."""
        named = self._settings.stores.get(url_or_name)
        s = self._settings
        endpoint = Endpoint(s.s3_endpoint_url, s.s3_region, None, s.s3_path_style)
        url = url_or_name
        if named is not None:
            url, endpoint = named.url, _named(named)
        parsed = urlparse(url)
        if parsed.scheme == "file" and parsed.path:
            base = Path(parsed.path)
            return _local(base / prefix if prefix else base, setting)
        if parsed.scheme == "s3" and parsed.netloc:
            if parsed.username or parsed.password or parsed.query:
                raise ConfigError(f"{setting}: credentials or options do not belong in the URL")
            path = "/".join(p for p in (parsed.path.strip("/"), prefix) if p)
            return S3Storage(
                self.client(endpoint),
                parsed.netloc,
                path,
                endpoint=endpoint.url or "",
                max_parts=s.s3_max_parts,
            )
        raise ConfigError(
            f"{setting}: {url_or_name[:80]!a} is neither s3://bucket[/prefix], "
            "file:///path nor a [stores] name"
        )

    def client(self, endpoint: Endpoint) -> S3Client:
        with self._lock:
            if endpoint not in self._clients:
                path_style = endpoint.path_style
                if path_style is None:
                    path_style = endpoint.url is not None
                session = boto3.session.Session(profile_name=endpoint.profile)
                self._clients[endpoint] = session.client(
                    "s3",
                    endpoint_url=endpoint.url,
                    region_name=endpoint.region,
                    config=Config(
                        s3={"addressing_style": "path" if path_style else "auto"},
                        retries={"max_attempts": 3, "mode": "standard"},
                        connect_timeout=5,
                        read_timeout=60,
                    ),
                )
            return self._clients[endpoint]


def _named(store: StoreConfig) -> Endpoint:
    return Endpoint(store.endpoint_url, store.region, store.profile, store.path_style)


def _local(directory: Path, setting: str) -> LocalStorage:
    try:
        return LocalStorage(directory)
    except StorageError as exc:
        raise ConfigError(f"{setting}: {exc.message}") from exc
