"""Every payload list against every route that takes that input: refused, never performed."""

from __future__ import annotations

from pathlib import Path

import httpx
import psycopg
import pytest
from fastapi import FastAPI

from pgkeep.throwaway.cluster import ThrowawayCluster
from tests.attacks import payloads
from tests.conftest import backup_files

pytestmark = pytest.mark.anyio

NAME_ROUTES = [
    ("GET", "/api/backup/download/{}"),
    ("POST", "/api/backup/download-link/{}"),
    ("POST", "/api/backup/{}/verify"),
    ("POST", "/api/backup/{}/restore"),
    ("POST", "/api/backup/{}/pin"),
    ("DELETE", "/api/backup/{}/pin"),
    ("DELETE", "/api/backup/{}"),
]


def _state(backup_dir: Path) -> list[tuple[str, int]]:
    return sorted(
        (p.name, p.stat().st_size) for p in backup_dir.iterdir() if not p.name.startswith("pgkeep-")
    )


async def test_every_name_payload_on_every_name_route(
    api: httpx.AsyncClient, auth: dict[str, str], backup_dir: Path
) -> None:
    real = (await api.post("/api/backup/create", headers=auth)).json()["filename"]
    before = _state(backup_dir)
    for method, template in NAME_ROUTES:
        for name in payloads.NAMES:
            body = {"targetDatabase": "attack_db"} if template.endswith("restore") else None
            response = await api.request(method, template.format(name), headers=auth, json=body)
            assert response.status_code in (400, 404), (method, name, response.text)
            assert set(response.json()) == {"error", "details"}
    assert _state(backup_dir) == before
    assert real in backup_files(backup_dir)


async def test_every_bad_authorization_on_every_protected_route(
    app: FastAPI, api: httpx.AsyncClient, backup_dir: Path
) -> None:
    routes = [
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        if path.startswith("/api/")
        for method in operations
    ]
    assert len(routes) >= 14
    for method, path in routes:
        url = path.replace("{filename}", "backup-2024-12-09T10-30-45.sql").replace(
            "{job_id}", "abc"
        )
        for header in payloads.BAD_AUTHORIZATION:
            response = await api.request(method, url, headers={"Authorization": header})
            assert response.status_code == 401, (method, url, header, response.text)
            assert response.headers["www-authenticate"] == "Bearer"
    for query in ("token=", "token=x.y.z", "ticket=", "ticket=a.b", "%74oken=x.y.z"):
        url = f"/api/backup/download/backup-2024-12-09T10-30-45.sql?{query}"
        assert (await api.get(url)).status_code == 401, query
    assert backup_files(backup_dir) == []


async def test_no_route_names_a_target_to_a_caller_without_a_token(
    app: FastAPI, api: httpx.AsyncClient
) -> None:
    """Seen: `POST /api/backup/create?target=nope` without a token answered 400 "no target
    'nope'" with every target's name (database names) in its details."""
    target = app.state.runtime.service().target
    routes = [
        (method.upper(), path.replace("{filename}", "backup-2024-12-09T10-30-45.sql"))
        for path, operations in app.openapi()["paths"].items()
        if path.startswith("/api/")
        for method in operations
    ]
    for method, path in routes:
        for query in ("target=nope", f"target={target}&ticket=a.b", "target=nope&ticket=a.b"):
            url = path.replace("{job_id}", "abc") + "?" + query
            response = await api.request(method, url)
            assert response.status_code == 401, (method, url, response.text)
            assert target not in response.text, (method, url, response.text)


async def test_every_bad_body_on_every_body_route(
    api: httpx.AsyncClient, auth: dict[str, str], backup_dir: Path
) -> None:
    real = (await api.post("/api/backup/create", headers=auth)).json()["filename"]
    jobs_before = (await api.get("/api/backup/jobs", headers=auth)).json()["count"]
    cases = [
        ("/api/backup/create", payloads.CREATE_BODIES),
        (f"/api/backup/{real}/verify", payloads.VERIFY_BODIES),
        (f"/api/backup/{real}/restore", payloads.RESTORE_BODIES),
    ]
    for url, bodies in cases:
        for body in bodies:
            response = await api.post(url, headers=auth, json=body)
            assert response.status_code == 400, (url, body, response.text)
        for raw in (b"{", b"[]", b'"x"', b"\xff\xfe", b"null" * (url.endswith("restore"))):
            if not raw:
                continue
            response = await api.post(
                url, headers={**auth, "Content-Type": "application/json"}, content=raw
            )
            assert response.status_code == 400, (url, raw, response.text)
    assert (await api.get("/api/backup/jobs", headers=auth)).json()["count"] == jobs_before
    assert len([n for n in backup_files(backup_dir) if not n.endswith(".json")]) == 1


async def test_every_restore_target_is_refused_before_any_work(
    api: httpx.AsyncClient, auth: dict[str, str], cluster: ThrowawayCluster, database: str
) -> None:
    real = (await api.post("/api/backup/create", headers=auth)).json()["filename"]
    jobs_before = (await api.get("/api/backup/jobs", headers=auth)).json()["count"]
    for target in payloads.RESTORE_TARGETS:
        for body in (
            {"targetDatabase": target},
            {"targetDatabase": target, "replace": True, "confirm": target},
        ):
            for query in ("", "?async=true"):
                response = await api.post(
                    f"/api/backup/{real}/restore{query}", headers=auth, json=body
                )
                assert response.status_code == 400, (target, body, query, response.text)
    assert (await api.get("/api/backup/jobs", headers=auth)).json()["count"] == jobs_before
    with psycopg.connect(cluster.url()) as conn:
        names = {str(r[0]) for r in conn.execute("SELECT datname FROM pg_database").fetchall()}
    assert {"postgres", "template0", "template1"} <= names
    assert not [n for n in names if n.startswith("pgkeep_")]


async def test_replace_may_only_replace_the_backups_own_database(
    api: httpx.AsyncClient, auth: dict[str, str], cluster: ThrowawayCluster
) -> None:
    """Seen: replace with a matching confirm dropped another application's database."""
    cluster.execute("CREATE DATABASE other_app")
    try:
        real = (await api.post("/api/backup/create", headers=auth)).json()["filename"]
        response = await api.post(
            f"/api/backup/{real}/restore?async=true",
            headers=auth,
            json={"targetDatabase": "other_app", "replace": True, "confirm": "other_app"},
        )
        assert response.status_code == 400
        assert "may only replace database" in response.json()["error"]
        with psycopg.connect(cluster.url("other_app")) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        cluster.execute("DROP DATABASE IF EXISTS other_app WITH (FORCE)")


async def test_unknown_target_parameter_is_refused(
    api: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    for target in ("nope", "../x", "a" * 201, "%2A%2A"):
        response = await api.get(f"/api/backup/list?target={target}", headers=auth)
        assert response.status_code == 400, (target, response.text)
