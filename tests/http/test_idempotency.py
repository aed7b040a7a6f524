"""Creates that scripts can retry (`Idempotency-Key`) and bounded waits (`?wait=`), on the
real app and a real pg_dump held back by a lock where a test needs a job still running."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from pgkeep import tokens
from pgkeep.config import Settings
from tests.blocking import table_locked, wait_for_pg_dump_waiting
from tests.conftest import backup_files

pytestmark = pytest.mark.anyio
CREATE = "/api/backup/create"


def _dumps(backup_dir: Path) -> list[str]:
    return [n for n in backup_files(backup_dir) if n.endswith(".sql")]


async def test_a_repeat_gets_the_same_backup_and_never_a_second_dump(
    api: httpx.AsyncClient, auth: dict[str, str], backup_dir: Path, settings: Settings
) -> None:
    once = {**auth, "Idempotency-Key": "deploy-41"}
    first = await api.post(CREATE, headers=once)
    again = await api.post(CREATE, headers=once)
    other_body = await api.post(CREATE, headers=once, json={"format": "custom"})
    other_query = await api.post(f"{CREATE}?async=true", headers=once)
    bob = tokens.mint(settings, sub="bob", role="OWNER", ttl=timedelta(hours=1))
    other_caller = await api.post(
        CREATE, headers={"Authorization": f"Bearer {bob}", "Idempotency-Key": "deploy-41"}
    )
    assert first.status_code == 200
    assert again.status_code == 200
    assert again.json()["filename"] == first.json()["filename"]
    assert (other_body.status_code, other_query.status_code) == (422, 422)
    assert "Idempotency-Key" in other_body.json()["error"]
    assert other_caller.status_code == 200  # keys are per caller: bob's is his own
    assert len(_dumps(backup_dir)) == 2


async def test_twenty_concurrent_creates_with_one_key_make_one_backup(
    api: httpx.AsyncClient, auth: dict[str, str], backup_dir: Path
) -> None:
    once = {**auth, "Idempotency-Key": "pipeline-7"}
    answers = await asyncio.gather(*(api.post(CREATE, headers=once) for _ in range(20)))
    assert {a.status_code for a in answers} == {200}
    assert len({a.json()["filename"] for a in answers}) == 1
    assert len(_dumps(backup_dir)) == 1
    jobs = (await api.get("/api/backup/jobs", headers=auth)).json()
    assert jobs["count"] == 1


async def test_wait_answers_202_when_it_runs_out_and_200_when_the_backup_is_done(
    api: httpx.AsyncClient, auth: dict[str, str], database: str, backup_dir: Path
) -> None:
    once = {**auth, "Idempotency-Key": "k"}
    url = f"{CREATE}?async=true&wait=3"  # ?wait= takes precedence over ?async=true
    with table_locked(database):
        started = await api.post(url, headers=once)
        assert started.status_code == 202  # the wait ran out: the table is locked
        job = started.json()["job"]
        assert started.headers["location"] == f"/api/backup/jobs/{job['id']}"
        await asyncio.to_thread(wait_for_pg_dump_waiting, database)
        repeat = await api.post(url, headers=once)
        assert repeat.status_code == 202
        assert repeat.json()["job"]["id"] == job["id"]  # the same job, never 409
    done = await api.post(url, headers=once)
    assert done.status_code == 200
    assert done.json()["filename"] == job["filename"]
    assert len(_dumps(backup_dir)) == 1
    plain = await api.post(f"{CREATE}?wait=60", headers=auth)
    assert plain.status_code == 200
    too_long = await api.post(f"{CREATE}?wait=601", headers=auth)
    assert too_long.status_code == 400


async def test_the_key_of_a_failed_job_starts_a_new_one(
    api: httpx.AsyncClient, auth: dict[str, str], database: str, backup_dir: Path
) -> None:
    once = {**auth, "Idempotency-Key": "retry-me"}
    with table_locked(database):
        job = (await api.post(f"{CREATE}?async=true", headers=once)).json()["job"]
        await asyncio.to_thread(wait_for_pg_dump_waiting, database)
        cancelled = await api.delete(f"/api/backup/jobs/{job['id']}", headers=auth)
        assert cancelled.json()["job"]["status"] == "cancelled"
    again = await api.post(f"{CREATE}?async=true", headers=once)
    assert again.status_code == 202
    assert again.json()["job"]["id"] != job["id"]
    finished = await api.post(f"{CREATE}?wait=60", headers=once)  # ?wait is part of the key's
    assert finished.status_code == 422  # request: another query is another request
    same = await api.post(f"{CREATE}?async=true", headers=once)
    assert same.json()["job"]["id"] == again.json()["job"]["id"]


async def test_a_repeat_after_the_backup_was_deleted_does_not_answer_it(
    api: httpx.AsyncClient, auth: dict[str, str], backup_dir: Path
) -> None:
    once = {**auth, "Idempotency-Key": "deploy-42"}
    first = (await api.post(CREATE, headers=once)).json()
    deleted = await api.delete(f"/api/backup/{first['filename']}", headers=auth)
    again = await api.post(CREATE, headers=once)
    assert deleted.status_code == 200
    assert again.status_code == 404
    assert "deleted since" in again.json()["error"]
    assert _dumps(backup_dir) == []


async def test_repeats_waiting_for_one_dump_leave_the_server_answering(
    api: httpx.AsyncClient, auth: dict[str, str], database: str, backup_dir: Path
) -> None:
    """45 repeats of one Idempotency-Key, each waiting for the same dump (held back by a
    lock), had each taken a worker thread: every other request (token checks, /readyz)
    waited for the dump. They wait without one now."""
    once = {**auth, "Idempotency-Key": "flood"}
    with table_locked(database):
        waiting = [asyncio.create_task(api.post(CREATE, headers=once)) for _ in range(45)]
        await asyncio.to_thread(wait_for_pg_dump_waiting, database)
        await asyncio.sleep(1)
        jobs = await asyncio.wait_for(api.get("/api/backup/jobs", headers=auth), 10)
        ready = await asyncio.wait_for(api.get("/readyz"), 10)
        assert not any(task.done() for task in waiting)
    answers = await asyncio.gather(*waiting)
    assert (jobs.status_code, ready.status_code) == (200, 200)
    assert {a.status_code for a in answers} == {200}
    assert len({a.json()["filename"] for a in answers}) == 1
    assert len(_dumps(backup_dir)) == 1
