"""An action whose audit entry cannot be written is refused (503), never done unrecorded.

Seen before: with the disk under the audit log full, 20 downloads were served and 14
left no entry. Here the trail fails for real: a full tmpfs, a path that cannot be
opened, a control database that refuses the row.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from pgkeep import wiring
from pgkeep.config import Settings
from pgkeep.core.audit import verify
from pgkeep.http.app import create_app
from pgkeep.throwaway.cluster import ThrowawayCluster
from tests.conftest import backup_files, plant_backup
from tests.disks import fill

pytestmark = pytest.mark.anyio
DATA = b"-- planted\n" * 1000


@asynccontextmanager
async def _client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://pgkeep.test") as client,
    ):
        yield client


@pytest.fixture
def tiny_mount(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "audit"
    mount.mkdir()
    command = ["mount", "-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs", str(mount)]
    if subprocess.run(command, capture_output=True, check=False).returncode != 0:
        pytest.skip("this sandbox does not allow mounting tmpfs")
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


def _refused_whole(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert set(response.json()) == {"error", "details"}


async def test_full_disk_under_the_audit_log_refuses_downloads_and_deletes(
    make_settings: Callable[..., Settings], auth: dict[str, str], tiny_mount: Path
) -> None:
    log = tiny_mount / "audit.jsonl"
    settings = make_settings(audit_log=log)
    name = plant_backup(settings, datetime(2024, 1, 1, tzinfo=UTC), DATA)
    url = f"/api/backup/download/{name}"
    async with _client(settings) as api:
        assert (await api.get(url, headers=auth)).content == DATA  # recorded while it fits
        filler = fill(tiny_mount)
        served = 0  # the log's last block may still hold an entry or two
        answers = [await api.get(url, headers=auth) for _ in range(20)]
        for answer in answers:
            if answer.status_code == 200:
                assert answer.content == DATA
                served += 1
            else:
                _refused_whole(answer)
                assert answer.json()["error"] == (
                    "cannot write the audit trail: No space left on device"
                )
        assert served < 5
        _refused_whole(await api.delete(f"/api/backup/{name}", headers=auth))
        _refused_whole(await api.post(f"/api/backup/{name}/pin", headers=auth))
        assert name in backup_files(settings.backup_dir)
        listed = (await api.get("/api/backup/list", headers=auth)).json()["backups"]
        assert not listed[0].get("pinned")
        entries = wiring.build(settings).audit.read()
        started = [
            e for e in entries if (e.get("action"), e.get("result")) == ("download", "started")
        ]
        assert len(started) == 1 + served  # every download served was recorded first
        filler.unlink()
        assert (await api.delete(f"/api/backup/{name}", headers=auth)).status_code == 200
    runtime = wiring.build(settings)
    report = verify(runtime.audit, runtime.audit.signer, runtime.audit.anchor)
    assert report.intact, report.problem
    assert report.notes == ()  # a failed append left no torn line
    assert [e["result"] for e in runtime.audit.read()][-2:] == ["started", "succeeded"]


async def test_audit_log_that_cannot_be_opened_refuses_actions(
    make_settings: Callable[..., Settings], auth: dict[str, str], tmp_path: Path
) -> None:
    log = tmp_path / "audit.jsonl"
    log.mkdir()  # a directory where the log should be: every open fails
    settings = make_settings(audit_log=log)
    name = plant_backup(settings, datetime(2024, 1, 1, tzinfo=UTC), DATA)
    async with _client(settings) as api:
        download = await api.get(f"/api/backup/download/{name}", headers=auth)
        delete = await api.delete(f"/api/backup/{name}", headers=auth)
    for answer in (download, delete):
        _refused_whole(answer)
        assert answer.json()["error"].startswith(f"cannot open the audit log {str(log)!r}")
    assert DATA not in download.content
    assert name in backup_files(settings.backup_dir)


async def test_control_database_refusing_audit_rows_keeps_entries_locally_then_joins_them(
    make_settings: Callable[..., Settings],
    auth: dict[str, str],
    cluster: ThrowawayCluster,
    tmp_path: Path,
) -> None:
    """The control database refuses the audit's rows (here a full disk, made by a trigger):
    actions go on, their entries kept in a local file (fsynced); once it answers, the next
    entry brings them into the shared chain, intact. Only when the local file cannot be
    written either is an action refused."""
    control = "audit_control_" + os.urandom(3).hex()
    cluster.create_database(control)
    state = tmp_path / "state"
    settings = make_settings(control_database_url=cluster.url(control), state_dir=state)
    name = plant_backup(settings, datetime(2024, 1, 1, tzinfo=UTC), DATA)
    url = f"/api/backup/download/{name}"
    refuse = (
        "CREATE FUNCTION pgkeep.refuse_rows() RETURNS trigger LANGUAGE plpgsql AS"
        " $$BEGIN RAISE EXCEPTION 'could not extend file: No space left on device'; END$$;"
        " CREATE TRIGGER refuse_rows BEFORE INSERT ON pgkeep.audit"
        " FOR EACH ROW EXECUTE FUNCTION pgkeep.refuse_rows();"
    )
    async with _client(settings) as api:
        assert (await api.get(url, headers=auth)).status_code == 200  # the table exists now
        cluster.execute(refuse, control)
        kept = await api.get(url, headers=auth)  # recorded locally: served
        assert kept.status_code == 200, kept.text
        assert kept.content == DATA
        pending = state / "audit-pending.jsonl"
        assert [json.loads(line)["result"] for line in pending.read_text().splitlines()] == [
            "started",
            "succeeded",
        ]
        pending.rename(tmp_path / "aside")
        pending.mkdir()  # neither can be written now: refused
        refused = await api.get(url, headers=auth)
        _refused_whole(refused)
        assert refused.json()["error"].startswith("cannot use the control database")
        assert "No space left on device" in refused.json()["details"]
        pending.rmdir()
        (tmp_path / "aside").rename(pending)
        cluster.execute("DROP TRIGGER refuse_rows ON pgkeep.audit", control)
        assert (await api.get(url, headers=auth)).status_code == 200  # joins them first
        assert not pending.exists()
        runtime = wiring.build(settings)
        report = verify(runtime.audit, runtime.audit.signer, runtime.audit.anchor)
        results = [(e["action"], e["result"], e.get("keptLocally")) for e in runtime.audit.read()]
        runtime.shared.board.close()
    assert report.intact, report.problem
    assert results == [
        ("download", "started", None),
        ("download", "succeeded", None),
        ("download", "started", True),
        ("download", "succeeded", True),
        ("download", "started", None),
        ("download", "succeeded", None),
    ]


async def test_entries_kept_locally_that_were_tampered_with_are_never_joined(
    make_settings: Callable[..., Settings],
    auth: dict[str, str],
    cluster: ThrowawayCluster,
    tmp_path: Path,
) -> None:
    """Someone who may write pgkeep's state directory edits (or plants) the entries kept
    while the control database was down: they are set aside, the gap recorded in the shared
    chain, and nothing of them is signed into it."""
    control = "audit_control_" + os.urandom(3).hex()
    cluster.create_database(control)
    state = tmp_path / "state"
    settings = make_settings(control_database_url=cluster.url(control), state_dir=state)
    name = plant_backup(settings, datetime(2024, 1, 1, tzinfo=UTC), DATA)
    url = f"/api/backup/download/{name}"
    async with _client(settings) as api:
        assert (await api.get(url, headers=auth)).status_code == 200
        cluster.execute(
            "CREATE FUNCTION pgkeep.refuse_rows() RETURNS trigger LANGUAGE plpgsql AS"
            " $$BEGIN RAISE EXCEPTION 'down'; END$$; CREATE TRIGGER refuse_rows BEFORE INSERT"
            " ON pgkeep.audit FOR EACH ROW EXECUTE FUNCTION pgkeep.refuse_rows();",
            control,
        )
        assert (await api.get(url, headers=auth)).status_code == 200  # kept locally
        pending = state / "audit-pending.jsonl"
        pending.write_text(pending.read_text().replace('"who": "alice"', '"who": "mallory"'))
        cluster.execute("DROP TRIGGER refuse_rows ON pgkeep.audit", control)
        assert (await api.get(url, headers=auth)).status_code == 200
        runtime = wiring.build(settings)
        entries = runtime.audit.read()
        report = verify(runtime.audit, runtime.audit.signer, runtime.audit.anchor)
        runtime.shared.board.close()
    assert report.intact, report.problem
    assert not [e for e in entries if e.get("who") == "mallory"]
    gaps = [e for e in entries if e.get("action") == "audit"]
    assert len(gaps) == 1
    assert "not joined" in gaps[0]["error"]
    assert list(state.glob("audit-pending.jsonl.rejected-*"))


def test_a_joined_file_put_back_adds_nothing_to_the_shared_chain(tmp_path: Path) -> None:
    """A copy of entries already joined, put back as pending (or left there because setting
    it aside failed), is never joined twice."""
    from pgkeep.core.signing import Signer
    from pgkeep.storage.audit import AuditLog
    from pgkeep.storage.audit_fallback import FallbackTrail

    rows: list[dict[str, object]] = []

    class Shared:  # the control database's trail, as the fallback uses it
        signer = Signer(b"k" * 32).derive("audit")

        def append(self, **fields: object) -> None:
            rows.append(fields)

        def append_all(self, entries: list[dict[str, object]]) -> None:
            rows.extend(entries)

        def read(self) -> list[dict[str, object]]:
            return list(rows)

    pending = tmp_path / "audit-pending.jsonl"
    local = AuditLog(pending, Shared.signer)
    trail = FallbackTrail(Shared(), local)  # type: ignore[arg-type]
    local.append(action="download", result="started")
    kept = pending.read_text()
    trail.append(action="list", result="succeeded")  # joins the pending entry first
    pending.write_text(kept)  # put back
    trail.append(action="list", result="succeeded")
    assert [r["action"] for r in rows] == ["download", "list", "list"]
