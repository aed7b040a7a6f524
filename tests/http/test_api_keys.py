"""API keys on the real app (two targets, pgkeep's state file, real pg_dump): minted,
listed, scoped per route, limited to targets, expiring on an injected clock, revoked,
forged rows refused, failed attempts rate-limited, and the secret written nowhere."""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from pgkeep import tokens, wiring
from pgkeep.config import Settings, load_settings
from pgkeep.core import apikeys
from pgkeep.core.credentials import SCOPES
from pgkeep.http.app import create_app
from pgkeep.http.routes import keeping
from pgkeep.throwaway.cluster import ThrowawayCluster
from tests.conftest import SECRET

pytestmark = pytest.mark.anyio
NAME = "backup-2024-12-09T10-30-45.sql"


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


class Deployment:
    def __init__(self, app: FastAPI, settings: Settings, clock: Clock) -> None:
        self.app, self.settings, self.clock = app, settings, clock
        owner = tokens.mint(settings, sub="alice", role="OWNER", ttl=timedelta(hours=1))
        self.owner = {"Authorization": f"Bearer {owner}"}

    def client(self, address: str = "10.0.0.1") -> httpx.AsyncClient:
        transport = httpx.ASGITransport(
            app=self.app, raise_app_exceptions=False, client=(address, 4242)
        )
        return httpx.AsyncClient(transport=transport, base_url="http://pgkeep.test")

    async def mint(self, **body: Any) -> dict[str, Any]:
        async with self.client() as api:
            answer = await api.post("/api/keys", json={"name": "k", **body}, headers=self.owner)
        assert answer.status_code == 201, answer.text
        result: dict[str, Any] = answer.json()
        return result


@pytest.fixture
async def deployment(
    cluster: ThrowawayCluster, database: str, tmp_path: Path
) -> AsyncIterator[Deployment]:
    path = tmp_path / "two.toml"
    path.write_text(
        f'jwt_secret = "{SECRET}"\nbackup_dir = "{tmp_path / "store"}"\n'
        f'pg_bin_dir = "{cluster.bin_dir}"\naudit_log = "{tmp_path / "audit.jsonl"}"\n'
        f'[targets.shop]\ndatabase_url = "{database}"\n'
        f'[targets.crm]\ndatabase_url = "{database}"\n'
    )
    settings = load_settings(config=path)
    clock = Clock()
    app = create_app(settings, wiring.build(settings, clock=clock))
    async with app.router.lifespan_context(app):
        yield Deployment(app, settings, clock)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_a_key_is_minted_once_listed_without_its_secret_and_describes_itself(
    deployment: Deployment,
) -> None:
    minted = await deployment.mint(
        name="ci-shop", scopes=["backups:create", "backups:read"], targets=["shop"]
    )
    assert set(minted) == {
        "success", "id", "name", "key", "scopes", "targets", "expiresAt", "createdAt", "owner",
        "parent",
    }  # fmt: skip
    key = minted["key"]
    assert key.startswith(f"pgk_{minted['id']}_")
    assert len(key) >= 4 + 16 + 1 + 43
    created = datetime.fromisoformat(minted["createdAt"])
    assert datetime.fromisoformat(minted["expiresAt"]) - created == timedelta(days=90)
    async with deployment.client() as api:
        listed = (await api.get("/api/keys", headers=deployment.owner)).json()
        before = listed["keys"][0]["lastUsedAt"]
        me = (await api.get("/api/keys/self", headers=bearer(key))).json()
        listed = (await api.get("/api/keys", headers=deployment.owner)).json()
        owner = (await api.get("/api/keys/self", headers=deployment.owner)).json()
        deployment.clock.now += timedelta(seconds=30)
        await api.get("/api/keys/self", headers=bearer(key))  # written once a minute at most
        soon = (await api.get("/api/keys", headers=deployment.owner)).json()["keys"][0]
        deployment.clock.now += timedelta(seconds=31)
        await api.get("/api/keys/self", headers=bearer(key))
        later = (await api.get("/api/keys", headers=deployment.owner)).json()["keys"][0]
    [row] = listed["keys"]
    assert soon["lastUsedAt"] == row["lastUsedAt"]
    assert later["lastUsedAt"] > row["lastUsedAt"]
    assert key not in str(listed)
    assert apikeys.digest(key) not in str(listed)
    assert (row["name"], row["targets"], row["owner"]) == ("ci-shop", ["shop"], "alice")
    assert before is None
    assert row["lastUsedAt"] is not None
    assert me["kind"] == "key"
    assert me["name"] == "ci-shop"
    assert me["targets"] == ["shop"]
    assert me["scopes"] == ["backups:create", "backups:read"]
    assert owner["kind"] == "owner"
    assert owner["targets"] is None
    assert set(owner["scopes"]) == set(SCOPES)


# Each route, the scope it needs, and a request that passes authorization cheaply (a
# backup that does not exist answers 404 once the scope and the target were accepted).
ROUTES: list[tuple[str, str, str, dict[str, Any] | None]] = [
    ("backups:read", "GET", "/api/backup/list?target=shop", None),
    ("backups:read", "GET", "/api/backup/list?target=*", None),
    ("backups:read", "GET", "/api/backup/targets", None),
    ("backups:read", "GET", "/api/backup/jobs", None),
    ("backups:read", "GET", "/api/backup/jobs/nope", None),
    ("backups:read", "GET", "/api/backup/jobs/nope/events", None),
    ("backups:read", "GET", "/api/backup/retention/preview?target=shop", None),
    ("backups:read", "GET", f"/api/backup/{NAME}/tables?target=shop", None),
    ("backups:download", "GET", f"/api/backup/download/{NAME}?target=shop", None),
    ("backups:download", "POST", f"/api/backup/download-link/{NAME}?target=shop", None),
    ("backups:create", "POST", "/api/backup/create?target=shop&async=true", None),
    ("backups:verify", "POST", f"/api/backup/{NAME}/verify?target=shop", None),
    ("backups:restore", "POST", f"/api/backup/{NAME}/restore?target=shop", {"targetDatabase": "x"}),
    ("backups:delete", "DELETE", f"/api/backup/{NAME}?target=shop", None),
    ("backups:pin", "POST", f"/api/backup/{NAME}/pin?target=shop", None),
    ("backups:pin", "DELETE", f"/api/backup/{NAME}/pin?target=shop", None),
    ("backups:pin", "PATCH", f"/api/backup/{NAME}?target=shop", {"labels": {"a": "b"}}),
    ("backups:read", "GET", "/api/backup/storage", None),
    ("audit:read", "GET", "/api/backup/audit", None),
    ("keys:manage", "GET", "/api/keys", None),
    ("keys:manage", "POST", "/api/keys", {"name": "sub", "scopes": ["keys:manage"]}),
    ("keys:manage", "DELETE", "/api/keys/0123456789abcdef", None),
]


async def test_each_scope_is_allowed_and_refused_on_each_route(deployment: Deployment) -> None:
    keys = {}
    for scope in SCOPES:
        only = await deployment.mint(name=f"only-{scope.replace(':', '-')}", scopes=[scope])
        others = [s for s in SCOPES if s != scope]
        without = await deployment.mint(name=f"not-{scope.replace(':', '-')}", scopes=others)
        keys[scope] = (only["key"], without["key"])
    async with deployment.client() as api:
        for scope, method, url, body in ROUTES:
            allowed, refused = keys[scope]
            yes = await api.request(method, url, json=body, headers=bearer(allowed))
            no = await api.request(method, url, json=body, headers=bearer(refused))
            assert yes.status_code not in (401, 403), (scope, method, url, yes.text)
            assert no.status_code == 403, (scope, method, url, no.text)
            assert scope in no.json()["details"], (url, no.json())
    # Every /api route is in the table: a new route cannot skip its scope unnoticed.
    served = {
        (method.upper(), path)
        for path, methods in deployment.app.openapi()["paths"].items()
        for method in methods
        if path.startswith("/api")
    }
    tested = {(method, _template(url)) for _, method, url, _ in ROUTES}
    assert served - tested == {("GET", "/api/keys/self"), ("DELETE", "/api/backup/jobs/{job_id}")}


def _template(url: str) -> str:
    path = url.split("?")[0].replace(NAME, "{filename}").replace("/nope", "/{job_id}")
    return path.replace("0123456789abcdef", "{key_id}")


async def test_a_job_is_cancelled_only_with_the_scope_of_its_kind(deployment: Deployment) -> None:
    reader = (await deployment.mint(name="reader", scopes=["backups:read"]))["key"]
    creator = (await deployment.mint(name="creator", scopes=["backups:create"]))["key"]
    async with deployment.client() as api:
        job = (
            await api.post("/api/backup/create?target=shop&async=true", headers=bearer(creator))
        ).json()["job"]
        refused = await api.delete(f"/api/backup/jobs/{job['id']}", headers=bearer(reader))
        allowed = await api.delete(f"/api/backup/jobs/{job['id']}", headers=bearer(creator))
    assert refused.status_code == 403
    assert "backups:create" in refused.json()["details"]
    assert allowed.status_code in (200, 409)  # cancelled, or finished already


async def test_a_key_for_some_targets_sees_and_reaches_only_them(deployment: Deployment) -> None:
    everything = list(SCOPES)
    key = (await deployment.mint(name="shop-only", scopes=everything, targets=["shop"]))["key"]
    async with deployment.client() as api:
        own = await api.post("/api/backup/create?target=shop", headers=bearer(key))
        assert own.status_code == 200, own.text
        other = await api.post("/api/backup/create?target=crm", headers=deployment.owner)
        assert other.status_code == 200
        crm = await api.get("/api/backup/list?target=crm", headers=bearer(key))
        crm_name = other.json()["filename"]
        crm_tables = await api.get(f"/api/backup/{crm_name}/tables?target=crm", headers=bearer(key))
        ghost_tables = await api.get(
            f"/api/backup/{NAME}/tables?target=nosuch", headers=bearer(key)
        )
        ghost = await api.get("/api/backup/list?target=nosuch", headers=bearer(key))
        unnamed = await api.get("/api/backup/list", headers=bearer(key))
        every = (await api.get("/api/backup/list?target=*", headers=bearer(key))).json()
        targets = (await api.get("/api/backup/targets", headers=bearer(key))).json()
        jobs = (await api.get("/api/backup/jobs", headers=bearer(key))).json()
        audit = (await api.get("/api/backup/audit", headers=bearer(key))).json()
        all_jobs = (await api.get("/api/backup/jobs", headers=deployment.owner)).json()
        crm_job = next(j for j in all_jobs["jobs"] if j["target"] == "crm")
        job = await api.get(f"/api/backup/jobs/{crm_job['id']}", headers=bearer(key))
        events = await api.get(f"/api/backup/jobs/{crm_job['id']}/events", headers=bearer(key))
        cancel = await api.delete(f"/api/backup/jobs/{crm_job['id']}", headers=bearer(key))
        wider = await api.post(
            "/api/keys", json={"name": "w", "scopes": ["backups:read"], "targets": ["crm"]},
            headers=bearer(key),
        )  # fmt: skip
        twice = await api.get("/api/backup/list?target=crm&target=shop", headers=bearer(key))
        every_twice = await api.get("/api/backup/list?target=crm&target=*", headers=bearer(key))
        reader = (await deployment.mint(name="reader", scopes=["backups:read"]))["key"]
        unscoped = await api.post("/api/backup/create?target=nosuch", headers=bearer(reader))
    assert (crm.status_code, ghost.status_code) == (403, 403)
    assert crm.json() == ghost.json()  # the same answer: whether crm exists is not told
    assert (crm_tables.status_code, ghost_tables.status_code) == (403, 403)
    assert crm_tables.json() == ghost_tables.json() == crm.json()
    assert unnamed.status_code == 400
    assert "crm" not in unnamed.text
    assert {b["target"] for b in every["backups"]} == {"shop"}
    assert [t["name"] for t in targets["targets"]] == ["shop"]
    assert targets["defaultTarget"] is None  # without ?target= it reaches nothing: named none
    assert (twice.status_code, every_twice.status_code) == (400, 400)
    assert "more than once" in twice.json()["error"]
    # The scope is checked before the target is looked up: no list of targets in a 400.
    assert unscoped.status_code == 403
    assert "backups:create" in unscoped.json()["details"]
    assert {j["target"] for j in jobs["jobs"]} == {"shop"}
    assert audit["entries"]
    assert {e["target"] for e in audit["entries"]} == {"shop"}
    assert job.status_code == 404
    assert events.status_code == 404
    assert cancel.status_code == 404
    assert wider.status_code == 403


async def test_a_key_mints_only_narrower_keys_expiring_no_later(deployment: Deployment) -> None:
    parent = await deployment.mint(
        name="parent", scopes=["keys:manage", "backups:read"], targets=["shop"], expiresIn="1h"
    )
    async with deployment.client() as api:

        async def child(**body: Any) -> httpx.Response:
            payload = {"name": "child", "scopes": ["backups:read"], **body}
            return await api.post("/api/keys", json=payload, headers=bearer(parent["key"]))

        ok = await child(expiresIn="30m")
        longer = await child(expiresIn="2h")
        never = await child(expiresIn="never")
        more = await child(scopes=["backups:delete"], expiresIn="1m")
        default = await child()  # 90 days: later than its parent
        wide = await deployment.mint(name="wide", scopes=["backups:read"])
        listed = (await api.get("/api/keys", headers=bearer(parent["key"]))).json()
        not_its = await api.delete(f"/api/keys/{wide['id']}", headers=bearer(parent["key"]))
        its = await api.delete(f"/api/keys/{ok.json()['id']}", headers=bearer(parent["key"]))
    assert {k["name"] for k in listed["keys"]} == {"parent", "child"}
    assert not_its.status_code == 403
    assert its.status_code == 200
    assert ok.status_code == 201
    assert ok.json()["targets"] == ["shop"]
    assert (longer.status_code, never.status_code, more.status_code) == (403, 403, 403)
    assert default.status_code == 403


async def test_a_key_minted_by_a_key_goes_when_its_minter_is_revoked(
    deployment: Deployment,
) -> None:
    """Revoking a leaked key revokes what it minted (down the chain), on the next request."""
    parent = await deployment.mint(name="parent", scopes=["keys:manage", "backups:read"])
    async with deployment.client() as api:
        body = {"name": "child", "scopes": ["keys:manage", "backups:read"], "expiresIn": "1h"}
        child = (await api.post("/api/keys", json=body, headers=bearer(parent["key"]))).json()
        body = {**body, "name": "grandchild"}
        grand = (await api.post("/api/keys", json=body, headers=bearer(child["key"]))).json()
        listed = (await api.get("/api/keys", headers=deployment.owner)).json()["keys"]
        before = await api.get("/api/keys/self", headers=bearer(grand["key"]))
        await api.delete(f"/api/keys/{parent['id']}", headers=deployment.owner)
        after = [
            await api.get("/api/backup/list?target=shop", headers=bearer(k["key"]))
            for k in (child, grand)
        ]
    assert {k["name"]: k["parent"] for k in listed}["grandchild"] == child["id"]
    assert before.status_code == 200
    assert [a.status_code for a in after] == [401, 401]
    assert all("minted it was revoked" in a.json()["details"] for a in after)


async def test_a_client_behind_a_shared_address_is_not_locked_out_by_guessers(
    deployment: Deployment,
) -> None:
    """Behind a proxy every client has one address: guessers there exhaust the address's
    failures, yet a correct key that never failed still gets in; unknown ids do not."""
    good = (await deployment.mint(name="good", scopes=["backups:read"]))["key"]
    async with deployment.client("127.0.0.1") as api:
        for i in range(apikeys.MAX_FAILURES_PER_ADDRESS):
            guess = f"pgk_{i:016x}_" + "A" * 43
            assert (await api.get("/api/keys/self", headers=bearer(guess))).status_code == 401
        again = await api.get("/api/keys/self", headers=bearer("pgk_" + "9" * 16 + "_" + "B" * 43))
        fine = await api.get("/api/keys/self", headers=bearer(good))
    assert again.status_code == 429
    assert fine.status_code == 200


async def test_bad_lifetimes_are_refused_and_never_is_explicit(deployment: Deployment) -> None:
    async with deployment.client() as api:
        statuses = []
        for text in ("0s", "367d", "5w", "", "1.5h"):
            body = {"name": "x", "scopes": ["backups:read"], "expiresIn": text}
            statuses.append(
                (await api.post("/api/keys", json=body, headers=deployment.owner)).status_code
            )
    assert statuses == [400] * 5
    assert (await deployment.mint(scopes=["backups:read"], expiresIn="never"))["expiresAt"] is None
    assert (await deployment.mint(scopes=["backups:read"], expiresIn="366d"))["expiresAt"]


async def test_keys_expire_on_the_clock_and_revoked_keys_are_refused(
    deployment: Deployment,
) -> None:
    short = await deployment.mint(name="short", scopes=["backups:read"], expiresIn="1h")
    other = await deployment.mint(name="other", scopes=["backups:read"])
    async with deployment.client() as api:
        assert (await api.get("/api/keys/self", headers=bearer(short["key"]))).status_code == 200
        deployment.clock.now += timedelta(hours=1)
        expired = await api.get("/api/keys/self", headers=bearer(short["key"]))
        revoked = await api.delete(f"/api/keys/{other['id']}", headers=deployment.owner)
        after = await api.get("/api/backup/list?target=shop", headers=bearer(other["key"]))
        unknown = await api.delete("/api/keys/0123456789abcdef", headers=deployment.owner)
    assert expired.status_code == 401
    assert "expired" in expired.json()["details"]
    assert revoked.json() == {"success": True, "id": other["id"]}
    assert after.status_code == 401
    assert "revoked" in after.json()["details"]
    assert unknown.status_code == 404


async def test_a_row_written_without_the_signing_key_is_not_a_key(
    deployment: Deployment, tmp_path: Path
) -> None:
    real = await deployment.mint(name="real", scopes=["backups:read"], targets=["shop"])
    forged = "pgk_" + "f" * 16 + "_" + "A" * 43
    state = Path(str(tmp_path) + "-state") / "state.sqlite3"
    with sqlite3.connect(state) as db:
        row = db.execute("SELECT * FROM api_keys WHERE id = ?", (real["id"],)).fetchone()
        db.execute(
            "INSERT INTO api_keys VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            ("f" * 16, "forged", apikeys.digest(forged), '["keys:manage"]', "null", *row[5:]),
        )
        # Widening a real key's targets breaks its HMAC too.
        db.execute("UPDATE api_keys SET targets = 'null' WHERE id = ?", (real["id"],))
    async with deployment.client() as api:
        assert (await api.get("/api/keys", headers=bearer(forged))).status_code == 401
        widened = await api.get("/api/backup/list?target=crm", headers=bearer(real["key"]))
    assert widened.status_code == 401


async def test_failed_attempts_are_limited_per_address_before_any_hashing(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = (await deployment.mint(name="good", scopes=["backups:read"]))["key"]
    wrong = good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB")
    hashed: list[str] = []
    real_digest = apikeys.digest

    def digest(key: str) -> str:
        hashed.append(key)
        return real_digest(key)

    monkeypatch.setattr(apikeys, "digest", digest)
    async with deployment.client("10.6.6.6") as attacker, deployment.client("10.0.0.7") as ci:
        answers = [
            (await attacker.get("/api/keys/self", headers=bearer(wrong))).status_code
            for _ in range(apikeys.MAX_FAILURES_PER_ADDRESS)
        ]
        hashed.clear()
        guess = "pgk_" + "0" * 16 + "_" + "A" * 43
        unknown = await attacker.get("/api/keys/self", headers=bearer(guess))
        assert hashed == []  # an unknown id from this address: refused before any hashing
        blocked = await attacker.get("/api/keys/self", headers=bearer(wrong))
        # The key's id is not secret: failures against it never lock its owner out, even
        # from the guesser's address (one proxy in front of everyone).
        correct = await attacker.get("/api/keys/self", headers=bearer(good))
        fine = await ci.get("/api/keys/self", headers=bearer(good))
        deployment.clock.now += apikeys.WINDOW + timedelta(seconds=1)
        later = await attacker.get("/api/keys/self", headers=bearer(wrong))
    assert answers == [401] * apikeys.MAX_FAILURES_PER_ADDRESS
    assert (unknown.status_code, blocked.status_code) == (429, 429)
    assert blocked.headers["retry-after"] == "60"
    assert correct.status_code == 200
    assert fine.status_code == 200
    assert later.status_code == 401


async def test_the_secret_is_written_nowhere(
    deployment: Deployment, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    minted = await deployment.mint(name="ci", scopes=["backups:create", "backups:read"])
    key = minted["key"]
    async with deployment.client() as api:
        created = await api.post("/api/backup/create?target=shop", headers=bearer(key))
        refused = await api.delete(f"/api/backup/{NAME}?target=shop", headers=bearer(key))
        await api.get("/api/keys/self", headers=bearer(key[:-1] + "x"))
        await api.get(f"/api/backup/list?target=shop&apikey={key}")  # pasted into a URL
        await api.get(f"/api/backup/list?target=shop&{key}=1", headers=bearer(key))  # as a name
        await api.get(f"/api/backup/download/{key}?target=shop", headers=deployment.owner)
        await api.delete(f"/api/backup/{key}.sql?target=shop", headers=deployment.owner)
        await api.delete(  # as a request id (a sane token otherwise: echoed, logged, audited)
            f"/api/backup/{NAME}?target=shop", headers={**bearer(key), "X-Request-Id": key[:64]}
        )
    assert created.status_code == 200
    assert refused.status_code == 403
    secret = key.rsplit("_", 1)[1]
    audit = (tmp_path / "audit.jsonl").read_text()
    state_dir = Path(str(tmp_path) + "-state")
    stored = b"".join(p.read_bytes() for p in state_dir.iterdir() if p.is_file())
    store = b"".join(p.read_bytes() for p in (tmp_path / "store").rglob("*") if p.is_file())
    # pgkeep's own log lines (the test's HTTP client logs the URLs it sends, as clients do)
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("pgkeep"))
    assert "apikey=[REDACTED]" in logged
    assert secret not in logged
    assert secret not in audit
    assert secret.encode() not in stored
    assert secret.encode() not in store
    entries = [e for e in map(_json, audit.splitlines()) if e.get("via") == "key"]
    assert {(e["who"], e["apiKeyId"], e["owner"]) for e in entries} == {
        ("ci", minted["id"], "alice")
    }
    assert {e["action"] for e in entries} >= {"create", "delete"}


def _json(line: str) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(line)
    return value


async def test_a_key_in_a_url_is_refused(deployment: Deployment) -> None:
    key = (await deployment.mint(name="dl", scopes=["backups:download"]))["key"]
    async with deployment.client() as api:
        url = f"/api/backup/download/{NAME}?target=shop&token={key}"
        in_url = await api.get(url)
        in_header = await api.get(f"/api/backup/download/{NAME}?target=shop", headers=bearer(key))
    assert in_url.status_code == 401
    assert "URL" in in_url.json()["error"]
    assert in_header.status_code == 404  # authorized; there is no such backup


async def test_readiness_names_no_target_without_an_owner_token(deployment: Deployment) -> None:
    key = (await deployment.mint(name="all", scopes=list(SCOPES)))["key"]
    async with deployment.client() as api:
        anonymous = await api.get("/readyz")
        by_key = await api.get("/readyz", headers=bearer(key))
        owner = await api.get("/readyz", headers=deployment.owner)
    for answer in (anonymous, by_key):
        names = [c["name"] for c in answer.json()["checks"]]
        assert "database" in names
        assert not any("shop" in n or "crm" in n for n in names), names
        assert all(set(c) == {"name", "ok"} for c in answer.json()["checks"])
    named = [c["name"] for c in owner.json()["checks"]]
    assert "shop.database" in named
    assert "crm.database" in named


async def test_a_keys_audit_pages_hold_its_targets_entries_only(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(keeping, "SCAN_PAGE", 3)  # pages of the trail smaller than the answer's
    key = (await deployment.mint(name="auditor", scopes=["audit:read"], targets=["shop"]))["key"]
    async with deployment.client() as api:
        for target in ("shop", "shop", "crm", "shop"):
            created = await api.post(
                f"/api/backup/create?target={target}", headers=deployment.owner
            )
            assert created.status_code == 200
        whole = (await api.get("/api/backup/audit?limit=1000", headers=deployment.owner)).json()
        pages = [
            (await api.get(f"/api/backup/audit?offset={o}&limit=2", headers=bearer(key))).json()
            for o in range(0, 12, 2)
        ]
    expected = [e for e in whole["entries"] if e["target"] == "shop"]
    assert len(expected) >= 6
    assert [e for p in pages for e in p["entries"]] == expected
    assert {p["total"] for p in pages} == {len(expected)}


async def test_a_download_link_a_key_asked_for_dies_with_the_key_and_is_audited_as_it(
    deployment: Deployment, tmp_path: Path
) -> None:
    async with deployment.client() as api:
        made = await api.post("/api/backup/create?target=shop", headers=deployment.owner)
        name = made.json()["filename"]
        keys = [
            await deployment.mint(name=n, scopes=["backups:download"], targets=["shop"])
            for n in ("dl-revoked", "dl-kept")
        ]
        links = [
            (
                await api.post(
                    f"/api/backup/download-link/{name}?target=shop", headers=bearer(k["key"])
                )
            ).json()["url"]
            for k in keys
        ]
        await api.delete(f"/api/keys/{keys[0]['id']}", headers=deployment.owner)
        dead = await api.get(links[0])
        alive = await api.get(links[1])
    assert dead.status_code == 401
    assert "revoked" in dead.json()["details"]
    assert alive.status_code == 200
    entries = [_json(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    downloads = [
        e for e in entries if e.get("action") == "download" and e.get("result") == "succeeded"
    ]
    assert [(e["who"], e["via"], e.get("apiKeyId")) for e in downloads] == [
        ("dl-kept", "key", keys[1]["id"])
    ]


async def test_a_key_revokes_only_what_it_could_have_minted(deployment: Deployment) -> None:
    manager = await deployment.mint(
        name="manager", scopes=["keys:manage", "backups:read"], targets=["shop"]
    )
    wider = await deployment.mint(name="wider", scopes=["backups:delete"], targets=["shop"])
    nowhere = await deployment.mint(name="nowhere", scopes=["backups:read"], targets=[])
    async with deployment.client() as api:
        as_manager = bearer(manager["key"])
        body = {"name": "deputy", "scopes": ["keys:manage", "backups:read"]}
        deputy = (await api.post("/api/keys", json=body, headers=as_manager)).json()
        answers = {
            "wider": await api.delete(f"/api/keys/{wider['id']}", headers=as_manager),
            "nowhere": await api.delete(f"/api/keys/{nowhere['id']}", headers=as_manager),
            "minter": await api.delete(f"/api/keys/{manager['id']}", headers=bearer(deputy["key"])),
            "deputy": await api.delete(f"/api/keys/{deputy['id']}", headers=as_manager),
        }
    statuses = {name: a.status_code for name, a in answers.items()}
    assert statuses == {"wider": 403, "nowhere": 403, "minter": 403, "deputy": 200}
