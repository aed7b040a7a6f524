"""The container image's file system, built by `make image-rootfs` with the Containerfile's
own build script, run as the image runs: pgkeep as PID 1 of its own PID namespace, chrooted
as uid 10001 with the Containerfile's environment, on a read-only root with its two volumes,
a private /tmp and a read-only TOML configuration. No container engine runs on the test
machines; this is what one would do with the image, minus the engine.

`make test` run as root builds image-rootfs/ first (a minute or two, only when its inputs
changed); without it, that run is skipped, saying why. What the Containerfile sets is
checked either way."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from pgkeep import tokens
from pgkeep.config import Settings, load_settings
from pgkeep.throwaway.cluster import ThrowawayCluster, _free_port, available_bin_dirs
from tests.conftest import SAMPLE_SQL, SECRET
from tests.deploy.conftest import ROOT

ROOTFS = ROOT / "image-rootfs"
CONTAINERFILE = ROOT / "Containerfile"
CONFIG = "/etc/pgkeep/pgkeep.toml"

needs_rootfs = pytest.mark.skipif(
    not (ROOTFS / "opt" / "pgkeep" / "bin" / "pgkeep").exists(),
    reason="no image file system: build it with `make image-rootfs` (root, a minute or two)",
)
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="chroot and mounts need root")


@dataclass(frozen=True)
class Image:
    """What the Containerfile says about running the image."""

    env: dict[str, str]
    user: str
    command: list[str]
    healthcheck: list[str]
    volumes: list[str]
    stop_signal: str


def _instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", CONTAINERFILE.read_text())
    lines = (line.strip() for line in text.splitlines())
    return [
        (parts[0].upper(), parts[1] if len(parts) > 1 else "")
        for parts in (line.split(None, 1) for line in lines if line and not line.startswith("#"))
    ]


def _image() -> Image:
    found = _instructions()
    last = {name: value for name, value in found}
    env = dict(
        pair.split("=", 1) for name, value in found if name == "ENV" for pair in value.split()
    )
    check = re.search(r"\bCMD\s+(\[.*\])", last["HEALTHCHECK"])
    assert check, last["HEALTHCHECK"]
    return Image(
        env=env,
        user=last["USER"],
        command=json.loads(last["ENTRYPOINT"]) + json.loads(last["CMD"]),
        healthcheck=json.loads(check[1]),
        volumes=json.loads(last["VOLUME"]),
        stop_signal=last["STOPSIGNAL"],
    )


def _chrooted(image: Image, env: dict[str, str], argv: list[str]) -> list[str]:
    """`argv` in the root file system as the image's user, with only the given environment."""
    pairs = [f"{k}={v}" for k, v in env.items()]
    return ["chroot", f"--userspec={image.user}", str(ROOTFS), "/usr/bin/env", "-i", *pairs, *argv]


# Run by sh as PID 1 of a new PID and mount namespace (unshare), then replaced by pgkeep.
# Mounts made here vanish with the namespace: nothing of them is left on this machine.
# Arguments: the root, the read-only configuration directory and where it goes, then
# (volume, mount point) pairs up to "--", then the command.
_CONTAINER = """
set -eu
root=$1 config=$2 config_at=$3
shift 3
mount --bind "$root" "$root"
mount -o remount,bind,ro "$root"
mount -t proc proc "$root/proc"
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$root/tmp"
mount --bind "$config" "$root$config_at"
mount -o remount,bind,ro "$root$config_at"
while [ "$1" != -- ]; do mount --bind "$1" "$root$2"; shift 2; done
shift
exec "$@"
"""


@dataclass
class Container:
    process: subprocess.Popen[bytes]
    log: Path

    def pgkeep_pid(self) -> int:
        """pgkeep's PID on this machine: the one child of unshare."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            found = children.read_text().split()
            if found:
                return int(found[0])
            time.sleep(0.05)
        raise AssertionError(self.log.read_text())


def _volume(path: Path, uid: int) -> Path:
    """An empty volume the image's user owns, as a runtime makes from the image's directory."""
    path.mkdir(mode=0o700)
    os.chown(path, uid, uid)
    return path


@pytest.fixture
def server(pg_bin_dirs: dict[int, Path]) -> Iterator[ThrowawayCluster]:
    """A PostgreSQL the image's pg_dump can dump: a major no newer than its newest client."""
    clients = [int(p.parent.parent.name) for p in ROOTFS.glob("usr/lib/postgresql/*/bin/pg_dump")]
    fitting = [major for major in available_bin_dirs() if major <= max(clients)]
    if not fitting:
        pytest.skip(f"no PostgreSQL server of major {max(clients)} or older to back up")
    with ThrowawayCluster(available_bin_dirs()[max(fitting)]) as cluster:
        cluster.create_database("shop")
        cluster.execute(SAMPLE_SQL.read_text(), "shop")
        yield cluster


def _start(image: Image, env: dict[str, str], volumes: dict[str, Path], config: Path) -> Container:
    log = config.parent / "container.log"
    mounts = [str(p) for at, volume in volumes.items() for p in (volume, Path(at))]
    argv = [
        "unshare", "--mount", "--pid", "--fork", "--propagation", "private",
        "sh", "-c", _CONTAINER, "container", str(ROOTFS), str(config), str(Path(CONFIG).parent),
        *mounts, "--", *_chrooted(image, env, image.command),
    ]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    return Container(process, log)


def _healthcheck(
    image: Image, env: dict[str, str], path: str | None = None
) -> subprocess.CompletedProcess[str]:
    """The image's HEALTHCHECK command, in the image as its user (optionally another path)."""
    command = image.healthcheck if path is None else [*image.healthcheck[:-1], path]
    argv = _chrooted(image, env, command)
    return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=30)


def _wait_healthy(image: Image, env: dict[str, str], container: Container) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and container.process.poll() is None:
        if _healthcheck(image, env).returncode == 0:
            return
        time.sleep(0.2)
    raise AssertionError(container.log.read_text())


def _token() -> str:
    settings = load_settings(jwt_secret=SECRET)
    return tokens.mint(settings, sub="ci", role="OWNER", ttl=timedelta(minutes=5))


def test_containerfile_sets_only_settings_pgkeep_reads() -> None:
    image = _image()
    settings = {f"PGKEEP_{name.upper()}" for name in Settings.model_fields}
    assert {name for name in image.env if name.startswith("PGKEEP_")} <= settings
    assert image.env["PGKEEP_STATE_DIR"] in image.volumes
    assert image.env["PGKEEP_BACKUP_DIR"] in image.volumes
    assert image.env["PGKEEP_STATE_DIR"] != image.env["PGKEEP_BACKUP_DIR"]
    assert image.user == "10001:10001"
    assert image.stop_signal == "SIGTERM"


@needs_rootfs
@needs_root
def test_image_serves_backs_up_and_stops_as_a_container_would(
    server: ThrowawayCluster, tmp_path: Path
) -> None:
    image = _image()
    (tmp_path / "config").mkdir()
    # The file holds settings, the environment the secrets (the database URL has one).
    (tmp_path / "config" / "pgkeep.toml").write_text('default_compression = "zstd"\n')
    port = _free_port()
    secrets = {"PGKEEP_JWT_SECRET": SECRET, "PGKEEP_DATABASE_URL": server.url("shop")}
    env = image.env | {"PGKEEP_PORT": str(port), "PGKEEP_CONFIG": CONFIG} | secrets
    uid = int(image.user.split(":")[0])
    volumes = {at: _volume(tmp_path / f"volume{i}", uid) for i, at in enumerate(image.volumes)}
    before = _healthcheck(image, env)
    container = _start(image, env, volumes, tmp_path / "config")
    try:
        _wait_healthy(image, env, container)
        pid = container.pgkeep_pid()
        status = Path(f"/proc/{pid}/status").read_text()
        base = f"http://127.0.0.1:{port}"
        auth = {"Authorization": f"Bearer {_token()}"}
        with httpx.Client(base_url=base, timeout=120) as client:
            ready = client.get("/readyz")
            created = client.post("/api/backup/create", headers=auth)
            listed = client.get("/api/backup/list", headers=auth).json()
        ready_check = _healthcheck(image, env, "/readyz")
        os.kill(pid, signal.Signals[image.stop_signal])
        code = container.process.wait(timeout=60)
    finally:
        if container.process.poll() is None:
            container.process.kill()
            container.process.wait()
    log = container.log.read_text()
    assert before.returncode == 1
    assert "unhealthy" in before.stderr
    assert re.search(r"^Uid:\s+10001\s", status, re.MULTILINE)
    assert ready.status_code == 200, ready.text
    assert ready_check.returncode == 0, ready_check.stderr
    assert created.status_code == 200, created.text
    name = created.json()["filename"]
    assert name.endswith(".sql.zst")  # the TOML file's default
    stored = volumes[image.env["PGKEEP_BACKUP_DIR"]] / name
    assert stored.stat().st_uid == 10001
    assert stored.stat().st_mode & 0o777 == 0o600
    assert [b["filename"] for b in listed["backups"]] == [name]
    assert code == 0, log
    assert (volumes[image.env["PGKEEP_STATE_DIR"]] / "state.sqlite3").exists()
    assert "Application shutdown complete" in log
    assert server.password not in log
