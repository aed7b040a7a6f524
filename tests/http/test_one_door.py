"""One door: the CLI and the scheduler enter through the service's jobs as the HTTP API does,
so each sees, excludes and may cancel the others' work (the same board: pgkeep's state
file here, the control database for instances), and options resolve the same both ways."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from pgkeep import scheduling, wiring
from pgkeep.cli import main
from pgkeep.config import Settings
from pgkeep.core.control import Control
from pgkeep.core.jobs import JobKind, JobStatus
from pgkeep.core.models import BackupOptions, Compression, DumpFormat
from pgkeep.core.options import resolve
from pgkeep.http.app import create_app
from tests.blocking import pg_dump_pids, table_locked, wait_for_pg_dump_waiting
from tests.conftest import ACTOR, SECRET, backup_files

pytestmark = pytest.mark.anyio


def _cli_env(settings: Settings) -> dict[str, str]:
    return {
        **os.environ,
        "PGKEEP_DATABASE_URL": settings.require_database_url(),
        "PGKEEP_JWT_SECRET": SECRET,
        "PGKEEP_BACKUP_DIR": str(settings.backup_dir),
        "PGKEEP_PG_BIN_DIR": str(settings.pg_bin_dir),
    }


async def test_a_cli_create_is_a_job_the_api_lists_excludes_and_cancels(
    settings: Settings, api: httpx.AsyncClient, auth: dict[str, str], database: str
) -> None:
    """`pgkeep backup create` in a process of its own: `pgkeep serve`'s API lists its job,
    answers 409 to a create of the same target naming it, and cancels it (the CLI learns
    at its next heartbeat, stops pg_dump, removes its partial file and exits non-zero)."""
    with table_locked(database):
        cli = subprocess.Popen(
            [sys.executable, "-m", "pgkeep", "backup", "create"],
            env=_cli_env(settings),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            await asyncio.to_thread(wait_for_pg_dump_waiting, database)
            jobs = (await api.get("/api/backup/jobs", headers=auth)).json()["jobs"]
            (job,) = [j for j in jobs if j["status"] == "running"]
            assert job["kind"] == "create"
            assert job["createdBy"].startswith("cli:")
            conflict = await api.post("/api/backup/create", headers=auth)
            assert conflict.status_code == 409
            assert job["id"] in conflict.json()["error"]
            cancelled = await api.delete(f"/api/backup/jobs/{job['id']}", headers=auth)
            assert cancelled.status_code == 200, cancelled.text
            _, err = await asyncio.to_thread(cli.communicate, timeout=60)
        finally:
            if cli.poll() is None:
                cli.kill()
    assert cli.returncode != 0
    assert "cancelled" in err
    assert cancelled.json()["job"]["status"] == "cancelled"
    assert backup_files(settings.backup_dir) == []
    assert pg_dump_pids(database) == []


MATRIX: list[dict[str, Any]] = [
    {},
    {"format": "custom"},
    {"compression": "gzip"},
    {"level": 3},
    {"format": "custom", "compression": "none"},
    {"format": "plain", "compression": "gzip", "level": 1},
]


def _flags(request: dict[str, Any]) -> list[str]:
    return [f"--{k}={v}" for k, v in request.items()]


async def test_the_cli_and_the_api_resolve_options_alike(
    make_settings: Callable[..., Settings],
    auth: dict[str, str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With PGKEEP_DEFAULT_FORMAT=plain, _COMPRESSION=zstd, _LEVEL=9 (the issue's case: HTTP
    gave custom/gzip, the CLI refused, and ignored the level), each request gives the same
    backup options both ways."""
    defaults = {"default_format": "plain", "default_compression": "zstd", "default_level": "9"}
    settings = make_settings(**defaults)
    for name, value in [*_cli_env(settings).items(), *defaults.items()]:
        monkeypatch.setenv(name if name.isupper() else f"PGKEEP_{name.upper()}", value)
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    made: list[tuple[dict[str, Any], str, str]] = []
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://t") as api,
    ):
        for request in MATRIX:
            answer = await api.post("/api/backup/create", headers=auth, json=request)
            assert answer.status_code == 200, answer.text
            by_api = answer.json()["filename"]
            assert await asyncio.to_thread(main, ["backup", "create", *_flags(request)]) == 0
            by_cli = capsys.readouterr().out.split()[0]
            made.append((request, by_api, by_cli))
    runtime = wiring.build(settings)
    options = {b.name: _options(b.manifest) for b in runtime.service().catalog.list()}
    for request, by_api, by_cli in made:
        assert options[by_api] == options[by_cli], request
        expected = resolve(
            settings.default_options(),
            DumpFormat(request["format"]) if "format" in request else None,
            Compression(request["compression"]) if "compression" in request else None,
            request.get("level"),
        )
        assert options[by_api][:2] == (expected.format, expected.compression)
        if expected.level is not None:
            assert options[by_api][2] == expected.level
    # The three cases, spelled out: defaults only; custom (zstd cannot be its
    # compression, so gzip, without the zstd level); gzip asked for (no default level).
    by_request = {str(r): options[a] for r, a, _ in made}
    assert by_request["{}"] == (DumpFormat.PLAIN, Compression.ZSTD, 9)
    custom = by_request[str({"format": "custom"})]
    assert custom[:2] == (DumpFormat.CUSTOM, Compression.GZIP)
    assert custom[2] != 9  # gzip's own default, not zstd's level
    gzip = by_request[str({"compression": "gzip"})]
    assert gzip[:2] == (DumpFormat.PLAIN, Compression.GZIP)
    assert gzip[2] != 9


def _options(manifest: Any) -> tuple[DumpFormat, Compression, int | None]:
    return (manifest.format, manifest.compression, manifest.level)


def test_a_scheduled_verify_is_a_job_bounded_by_the_verify_pool_and_cancellable(
    make_settings: Callable[..., Settings],
) -> None:
    """The scheduler enters through start_verify: its verify waits, queued, while the one
    verify slot (PGKEEP_VERIFY_CONCURRENCY=1) is taken, is listed, and is cancelled like any
    job (before, scheduled verifies ran outside the pool, unlisted, uncancellable)."""
    runtime = wiring.build(make_settings(verify_concurrency=1))
    service = runtime.service()
    service.creating.create(BackupOptions(), ACTOR)
    release = threading.Event()

    def hold(control: Control) -> tuple[str | None, Any]:
        release.wait(30)
        return None, None

    holder = runtime.jobs.submit(JobKind.VERIFY, hold, pool=service.pools.proving, target="x")
    failure: list[BaseException] = []

    def scheduled() -> None:
        try:
            scheduling.run_target(service, JobKind.VERIFY)
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=scheduled)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        queued: list[Any] = []
        while not queued and time.monotonic() < deadline:
            queued = [
                j
                for j in runtime.jobs.list()
                if j.kind is JobKind.VERIFY and j.created_by == "scheduler"
            ]
            time.sleep(0.05)
        (job,) = queued
        assert job.status is JobStatus.QUEUED
        time.sleep(0.5)
        assert runtime.jobs.get(job.id).status is JobStatus.QUEUED  # bounded by the pool
        assert runtime.jobs.cancel(job.id).status is JobStatus.CANCELLED
        thread.join(10)
        assert failure
        assert "cancelled" in str(failure[0])
    finally:
        release.set()
        runtime.jobs.wait(holder.id, timeout=10)
        thread.join(10)


def test_a_killed_cli_create_blocks_nothing_with_no_server_running(
    settings: Settings, database: str
) -> None:
    """A CLI create killed (kill -9) with no `pgkeep serve` to notice left its job running on
    the board, and every later create of the target was refused, for good. The next create
    fails the dead process's job itself and goes on."""
    env = _cli_env(settings)
    with table_locked(database):
        cli = subprocess.Popen([sys.executable, "-m", "pgkeep", "backup", "create"], env=env)
        try:
            wait_for_pg_dump_waiting(database)
        finally:
            os.kill(cli.pid, signal.SIGKILL)
            cli.wait()
    deadline = time.monotonic() + 30
    while pg_dump_pids(database) and time.monotonic() < deadline:  # it dies with its parent
        time.sleep(0.1)
    again = subprocess.run(
        [sys.executable, "-m", "pgkeep", "backup", "create"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert again.returncode == 0, again.stderr
    # The killed create's file went with its job: a create in the same second (the same
    # name) would otherwise be refused as "already being written".
    assert not list(settings.backup_dir.glob("*.partial"))


def test_the_state_directory_is_refused_when_it_could_be_planted(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """A symlink for the state file, or a state directory inside the backup directory (a
    store's writer could change it): refused, naming PGKEEP_STATE_DIR."""
    from pgkeep.errors import ConfigError
    from pgkeep.local.state import StateFile

    state = tmp_path / "planted"
    state.mkdir(mode=0o700)
    (state / "state.sqlite3").symlink_to(tmp_path / "elsewhere.sqlite3")
    with (
        pytest.raises(ConfigError, match=r"PGKEEP_STATE_DIR: .*(symlink|symbolic link)"),
        StateFile(state).transaction(),
    ):
        pass
    inside = make_settings()
    inside = make_settings(state_dir=inside.backup_dir / "state")
    with pytest.raises(ConfigError, match=r"PGKEEP_STATE_DIR: .* in the backup directory"):
        wiring.build(inside)
