"""Upgrade rehearsals on real servers: a backup of the oldest major here (Debian's 15)
restored into the newest (the PostgreSQL 18 wheel) as the loader, without owners or
grants, per major, in the answer, the manifest, the list and the metric; and one of the
newest that will not go into the oldest (pg_dump 18 writes settings 15 rejects), failed
with its first error and alerted, the backup's verdict unchanged."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from pgkeep import tokens
from pgkeep.config import Settings, load_settings
from pgkeep.http.app import create_app
from pgkeep.throwaway.cluster import ThrowawayCluster
from tests.conftest import SECRET
from tests.test_notify import Receiver, receiver  # noqa: F401 (a fixture)

pytestmark = pytest.mark.anyio
NOTIFY_SECRET = "n0tify-" + "s3cret-k9Qw7ZpL2mXv8RbN4cYd"


@pytest.fixture
def owned(older_cluster: ThrowawayCluster) -> Iterator[tuple[str, str]]:
    """A database on the older server whose table a role owns and another may read (roles
    the newer server does not have); (database, owner)."""
    name, owner, reader = (f"{p}_{secrets.token_hex(3)}" for p in ("reh", "own", "rd"))
    older_cluster.create_database(name)
    older_cluster.execute(f"CREATE ROLE {owner} NOLOGIN; CREATE ROLE {reader} NOLOGIN")
    older_cluster.execute(
        "CREATE TABLE public.t (id int PRIMARY KEY, v text);"  # noqa: S608 (test names)
        "INSERT INTO public.t SELECT g, 'row ' || g FROM pg_catalog.generate_series(1, 250) g;"
        f"ALTER TABLE public.t OWNER TO {owner}; GRANT SELECT ON public.t TO {reader};"
        "CREATE TABLE public.u (a int); INSERT INTO public.u VALUES (1), (2);",
        name,
    )
    yield name, owner
    older_cluster.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    older_cluster.execute(f"DROP ROLE {owner}; DROP ROLE {reader}")


def _app(settings: Settings) -> tuple[Any, dict[str, str]]:
    app = create_app(settings)
    if app.state.runtime.notifier is not None:
        app.state.runtime.notifier._backoff = 0.01
    token = tokens.mint(settings, sub="tester", role="OWNER", ttl=timedelta(minutes=5))
    return app, {"Authorization": f"Bearer {token}"}


def _left(server: ThrowawayCluster) -> list[str]:
    """Scratch databases and loader roles left on a server."""
    with psycopg.connect(server.url("postgres")) as conn:
        rows = conn.execute(
            "SELECT datname FROM pg_catalog.pg_database WHERE datname LIKE 'pgkeep%'"
            " UNION ALL SELECT rolname FROM pg_catalog.pg_roles"
            " WHERE rolname LIKE 'pgkeep\\_load\\_%'"
        ).fetchall()
    return [str(r[0]) for r in rows]


@pytest.mark.parametrize("form", ["plain", "custom"])
async def test_a_rehearsal_into_the_next_major_reports_per_major(
    older_cluster: ThrowawayCluster,
    cluster: ThrowawayCluster,
    owned: tuple[str, str],
    backup_dir: Path,
    form: str,
) -> None:
    database, owner = owned
    settings = load_settings(
        database_url=older_cluster.url(database),
        jwt_secret=SECRET,
        backup_dir=backup_dir,
        pg_bin_dir=cluster.bin_dir,
        rehearsal_database_urls=json.dumps([cluster.url("postgres")]),
    )
    app, auth = _app(settings)
    before = _left(cluster)  # the shared server may hold other tests' leftovers
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as api:
        made = await api.post("/api/backup/create", headers=auth, json={"format": form})
        name = made.json()["filename"]
        plain = (await api.post(f"/api/backup/{name}/verify", headers=auth, json={})).json()
        assert plain["rehearsals"] == []  # only with restore
        answer = await api.post(f"/api/backup/{name}/verify", headers=auth, json={"restore": True})
        body = answer.json()
        assert (body["verified"], body["verdict"]) == (True, "restored"), body
        [rehearsal] = body["rehearsals"]
        assert rehearsal["server"] == f"127.0.0.1:{cluster.port}"  # host:port, no password
        assert (rehearsal["major"], rehearsal["ok"]) == (18, True), rehearsal
        assert "2 tables, 252 rows proven" in rehearsal["details"]
        assert cluster.password not in answer.text
        listed = (await api.get("/api/backup/list", headers=auth)).json()["backups"]
        metrics = (await api.get("/metrics")).text
    [item] = [b for b in listed if b["filename"] == name]
    assert item["verification"]["rehearsals"] == [rehearsal]
    stored = json.loads((backup_dir / f"{name}.json").read_text())
    assert stored["verification"]["rehearsals"] == [rehearsal]
    assert f'pgkeep_rehearsal_ok{{major="18",target="{database}"}} 1.0' in metrics
    assert _left(cluster) == before
    with psycopg.connect(cluster.url("postgres")) as conn:  # the owner never existed there
        found = conn.execute("SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = %s", (owner,))
        assert found.fetchone() is None


async def test_a_rehearsal_that_fails_says_its_first_error_and_never_fails_the_backup(
    older_cluster: ThrowawayCluster,
    make_settings: Any,
    receiver: Receiver,  # noqa: F811
) -> None:
    """A dump by pg_dump 18 sets transaction_timeout, which PostgreSQL 15 does not know."""
    settings = make_settings(
        rehearsal_database_urls=json.dumps([older_cluster.url("postgres")]),
        notify_urls=receiver.url,
        notify_secret=NOTIFY_SECRET,
    )
    app, auth = _app(settings)
    before = _left(older_cluster)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as api:
        name = (await api.post("/api/backup/create", headers=auth)).json()["filename"]
        answer = await api.post(f"/api/backup/{name}/verify", headers=auth, json={"restore": True})
        body = answer.json()
        metrics = (await api.get("/metrics")).text
    assert (body["verified"], body["verdict"]) == (True, "restored"), body
    [rehearsal] = body["rehearsals"]
    assert (rehearsal["major"], rehearsal["ok"]) == (15, False)
    assert "ERROR:" in rehearsal["details"]
    assert "transaction_timeout" in rehearsal["details"]
    assert older_cluster.password not in answer.text
    assert 'pgkeep_rehearsal_ok{major="15"' in metrics
    assert "} 0.0" in next(line for line in metrics.splitlines() if 'major="15"' in line)
    [(headers, sent)] = receiver.wait_for(1)
    assert headers["x-pgkeep-event"] == "verify.rehearsal"
    text = json.loads(sent)["text"]
    assert "PostgreSQL 15" in text
    assert "transaction_timeout" in text
    assert _left(older_cluster) == before


async def test_a_rehearsal_needs_no_rights_over_the_owners_roles(
    older_cluster: ThrowawayCluster,
    cluster: ThrowawayCluster,
    owned: tuple[str, str],
    backup_dir: Path,
) -> None:
    """On a rehearsal server where the owner's role exists and pgkeep's role (no superuser)
    may not grant it, a rehearsal still restores: its loader joins no owner's role."""
    database, owner = owned
    role, password = f"rh_{secrets.token_hex(3)}", secrets.token_urlsafe(16)
    cluster.execute(
        f"CREATE ROLE {role} LOGIN PASSWORD '{password}' NOSUPERUSER CREATEDB CREATEROLE;"
        f"GRANT pg_signal_backend TO {role}; CREATE ROLE {owner} NOLOGIN;"
        "DO $$ BEGIN CREATE ROLE pgkeep_loaders NOLOGIN;"
        " EXCEPTION WHEN duplicate_object THEN NULL; END $$;"
        f"GRANT pgkeep_loaders TO {role} WITH ADMIN OPTION;"
    )
    url = f"postgresql://{role}:{password}@127.0.0.1:{cluster.port}/postgres"
    settings = load_settings(
        database_url=older_cluster.url(database),
        jwt_secret=SECRET,
        backup_dir=backup_dir,
        pg_bin_dir=cluster.bin_dir,
        rehearsal_database_urls=json.dumps([url]),
    )
    try:
        app, auth = _app(settings)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as api:
            name = (await api.post("/api/backup/create", headers=auth)).json()["filename"]
            body = (
                await api.post(f"/api/backup/{name}/verify", headers=auth, json={"restore": True})
            ).json()
        [rehearsal] = body["rehearsals"]
        assert (rehearsal["major"], rehearsal["ok"]) == (18, True), rehearsal
    finally:
        cluster.execute(f"DROP ROLE IF EXISTS {owner}")
        cluster.execute(f"DROP OWNED BY {role} CASCADE; DROP ROLE {role}")
