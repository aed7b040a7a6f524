"""Two real `pgkeep serve` processes sharing a control database: a key minted on one works on
the other, a revocation on one is refused by the other from its next request on, the
secret reaches neither the control database's tables nor the logs, and 20 concurrent
creates with one Idempotency-Key, spread over both, make one backup."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import pytest

from pgkeep.throwaway.cluster import ThrowawayCluster
from tests.test_serve_process import _token, server_env, serving


@dataclass
class Pair:
    bases: tuple[str, str]
    backup_dir: Path
    control: str
    logs: tuple[Path, Path]
    owner: dict[str, str]


@pytest.fixture
def pair(
    cluster: ThrowawayCluster, database: str, backup_dir: Path, tmp_path: Path
) -> Iterator[Pair]:
    control = "control_" + secrets.token_hex(4)
    cluster.create_database(control)
    env = server_env(database, backup_dir, cluster)
    env["PGKEEP_CONTROL_DATABASE_URL"] = cluster.url(control)
    logs = (tmp_path / "one.log", tmp_path / "two.log")
    with (
        serving(env | {"PGKEEP_STATE_DIR": str(tmp_path / "state-one")}, logs[0]) as one,
        serving(env | {"PGKEEP_STATE_DIR": str(tmp_path / "state-two")}, logs[1]) as two,
    ):
        owner = {"Authorization": f"Bearer {_token()}"}
        yield Pair((one, two), backup_dir, cluster.url(control), logs, owner)
    cluster.execute(f'DROP DATABASE IF EXISTS "{control}" WITH (FORCE)')


def test_a_revocation_on_one_instance_is_honoured_by_the_other_within_a_second(
    pair: Pair,
) -> None:
    one, two = (httpx.Client(base_url=b, timeout=60) for b in pair.bases)
    with one, two:
        body = {"name": "ci", "scopes": ["backups:read", "backups:create"]}
        minted = one.post("/api/keys", json=body, headers=pair.owner).json()
        key = {"Authorization": f"Bearer {minted['key']}"}
        assert two.get("/api/backup/list", headers=key).status_code == 200
        assert two.post("/api/backup/create", headers=key).status_code == 200
        revoked = one.delete(f"/api/keys/{minted['id']}", headers=pair.owner)
        at = time.monotonic()
        refused = two.get("/api/backup/list", headers=key)
        elapsed = time.monotonic() - at
        listed = two.get("/api/keys", headers=pair.owner).json()
    assert revoked.json() == {"success": True, "id": minted["id"]}
    assert refused.status_code == 401
    assert elapsed < 1.0
    assert listed["keys"][0]["revokedAt"] is not None
    secret = minted["key"].rsplit("_", 1)[1]
    with psycopg.connect(pair.control) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT quote_ident(table_name) FROM information_schema.tables"
                " WHERE table_schema = 'pgkeep'"
            )
        ]
        dumped = "".join(
            str(conn.execute(f"SELECT * FROM pgkeep.{t}").fetchall())  # noqa: S608 (names from the catalog)
            for t in tables
        )
    assert "api_keys" in tables
    assert "audit" in " ".join(tables)
    assert minted["id"] in dumped
    assert secret not in dumped
    assert all(secret not in log.read_text() for log in pair.logs)


def test_twenty_concurrent_creates_with_one_key_on_two_instances_make_one_backup(
    pair: Pair,
) -> None:
    one, two = (httpx.Client(base_url=b, timeout=120) for b in pair.bases)
    with one, two:
        body = {"name": "ci", "scopes": ["backups:create", "backups:read"]}
        key = one.post("/api/keys", json=body, headers=pair.owner).json()["key"]
        headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": "pipeline-1234"}

        def create(n: int) -> httpx.Response:
            return (one, two)[n % 2].post("/api/backup/create?wait=120", headers=headers)

        with ThreadPoolExecutor(20) as pool:
            answers = list(pool.map(create, range(20)))
        jobs = one.get("/api/backup/jobs", headers=pair.owner).json()
    assert {a.status_code for a in answers} == {200}, [a.text for a in answers]
    assert len({a.json()["filename"] for a in answers}) == 1
    assert [p.name for p in pair.backup_dir.glob("*.sql")] == [answers[0].json()["filename"]]
    assert jobs["count"] == 1


def test_a_forged_x_forwarded_for_is_not_another_address(pair: Pair) -> None:
    """Without FORWARDED_ALLOW_IPS nobody's X-Forwarded-For is believed, not even from
    127.0.0.1: a guesser cannot name a new address per try to dodge the per-address limit."""
    with httpx.Client(base_url=pair.bases[0], timeout=60) as api:
        answers = [
            api.get(
                "/api/keys/self",
                headers={
                    "Authorization": f"Bearer pgk_{i:016x}_{'A' * 43}",
                    "X-Forwarded-For": f"10.9.9.{i}",
                },
            ).status_code
            for i in range(11)
        ]
    assert answers == [401] * 10 + [429]
