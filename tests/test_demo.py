"""`make run` as a newcomer runs it: `pgkeep demo`, read its banner, use what it prints."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import boto3
import httpx

from pgkeep.throwaway.cluster import _free_port


def _banner(proc: subprocess.Popen[str]) -> str:
    """What the demo prints up to "Ctrl-C stops it." (its settings and token)."""
    assert proc.stdout is not None
    banner = ""
    deadline = time.monotonic() + 120
    while "Ctrl-C stops it." not in banner and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        banner += line
    return banner


def _wait_serving(base: str) -> None:
    for _ in range(100):
        try:
            httpx.get(f"{base}/healthz")
            return
        except httpx.TransportError:
            time.sleep(0.1)


def test_demo_with_s3_serves_backups_from_a_throwaway_bucket(tmp_path: Path) -> None:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PGKEEP_", "AWS_"))}
    env |= {"PGKEEP_DEMO_S3": "1", "PGKEEP_BACKUP_DIR": str(tmp_path / "b")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pgkeep", "demo", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        banner = _banner(proc)
        exports = dict(re.findall(r"export (\w+)=(\S+)", banner))
        assert "backups in: s3://pgkeep-demo/backups at http://127.0.0.1:" in banner, banner
        base = f"http://127.0.0.1:{port}"
        auth = {"Authorization": f"Bearer {exports['TOKEN']}"}
        _wait_serving(base)
        created = httpx.post(f"{base}/api/backup/create", headers=auth, timeout=60).json()
        listed = httpx.get(f"{base}/api/backup/list", headers=auth).json()
        s3 = boto3.client(
            "s3",
            endpoint_url=exports["PGKEEP_S3_ENDPOINT_URL"],
            aws_access_key_id=exports["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=exports["AWS_SECRET_ACCESS_KEY"],
            region_name="us-east-1",
        )
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket="pgkeep-demo")["Contents"]]
    finally:
        proc.send_signal(signal.SIGINT)
        rest = proc.communicate(timeout=60)[0]
    assert [b["filename"] for b in listed["backups"]] == [created["filename"]]
    assert f"backups/{created['filename']}" in keys
    assert not list((tmp_path / "b").glob("backup-*"))
    assert "Stopped; the throwaway cluster is removed." in rest, rest[-3000:]
    assert proc.returncode == 0


def test_demo_stopped_with_sigterm_removes_its_throwaway_cluster(tmp_path: Path) -> None:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PGKEEP_", "AWS_"))}
    env |= {"PGKEEP_BACKUP_DIR": str(tmp_path / "b")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pgkeep", "demo", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        banner = _banner(proc)
        socket_dir = re.search(r"@127\.0\.0\.1:(\d+)/", banner)
        assert socket_dir is not None, banner
        cluster_port = socket_dir.group(1)
        assert "as the role 'pgkeep' (no superuser" in banner
        assert re.search(r"PGKEEP_DATABASE_URL=postgresql://pgkeep:", banner), banner
        base = f"http://127.0.0.1:{port}"
        _wait_serving(base)
        # The safe way to run is the demo's: a verify with a test restore and a restore work.
        token = dict(re.findall(r"export (\w+)=(\S+)", banner))["TOKEN"]
        auth = {"Authorization": f"Bearer {token}"}
        name = httpx.post(f"{base}/api/backup/create", headers=auth, timeout=60).json()["filename"]
        verified = httpx.post(
            f"{base}/api/backup/{name}/verify", headers=auth, json={"restore": True}, timeout=60
        ).json()
        assert verified["verified"] is True, verified
        restored = httpx.post(
            f"{base}/api/backup/{name}/restore",
            headers=auth,
            json={"targetDatabase": "shop_copy"},
            timeout=60,
        )
        assert restored.status_code == 200, restored.text
    finally:
        proc.send_signal(signal.SIGTERM)  # as `timeout` or `kill` would stop it
        rest = proc.communicate(timeout=60)[0]
    assert "Stopped; the throwaway cluster is removed." in rest, rest[-3000:]
    assert proc.returncode == 0
    running = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert f"-p {cluster_port} " not in running  # its PostgreSQL is gone


def test_demo_honours_pgkeep_port_and_refuses_a_taken_one_before_anything_else() -> None:
    """PGKEEP_PORT is the demo's port too; taken, the demo says so in one line and exits
    before starting a cluster or printing a token (it used to print both first)."""
    taken = socket.create_server(("127.0.0.1", 0))
    port = taken.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PGKEEP_", "AWS_"))}
    env |= {"PGKEEP_PORT": str(port)}
    try:
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "pgkeep", "demo"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        taken.close()
    assert done.returncode != 0
    assert f"PGKEEP_HOST/PGKEEP_PORT: cannot listen on 127.0.0.1:{port}" in done.stderr
    assert "TOKEN" not in done.stdout + done.stderr
    assert "throwaway" not in done.stdout
    assert time.monotonic() - started < 20  # no cluster was started
