"""`pgkeep api-key create|list|revoke`: a key minted on the command line works on the app
that shares its state file, is listed without its secret, and is refused once revoked."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from pgkeep.cli import main
from pgkeep.config import load_settings
from pgkeep.http.app import create_app
from pgkeep.throwaway.cluster import ThrowawayCluster
from tests.conftest import SECRET


@pytest.fixture
def env(
    monkeypatch: pytest.MonkeyPatch, database: str, backup_dir: Path, cluster: ThrowawayCluster
) -> None:
    monkeypatch.setenv("PGKEEP_DATABASE_URL", database)
    monkeypatch.setenv("PGKEEP_JWT_SECRET", SECRET)
    monkeypatch.setenv("PGKEEP_BACKUP_DIR", str(backup_dir))
    monkeypatch.setenv("PGKEEP_PG_BIN_DIR", str(cluster.bin_dir))


@pytest.mark.anyio
@pytest.mark.usefixtures("env")
async def test_a_key_from_the_cli_works_until_the_cli_revokes_it(
    capsys: pytest.CaptureFixture[str], backup_dir: Path
) -> None:
    argv = ["api-key", "create", "--name", "ci-shop", "--scope", "backups:read"]
    assert main([*argv, "--scope", "backups:create", "--expires", "1h"]) == 0
    made = capsys.readouterr()
    key = made.out.strip()
    assert key.startswith("pgk_")
    key_id = key.split("_")[1]
    assert f"API key {key_id} (ci-shop)" in made.err
    assert main(["api-key", "create", "--name", "bad", "--scope", "nope"]) == 2
    assert main(["api-key", "list"]) == 0
    listed = capsys.readouterr().out
    assert f"{key_id}\tci-shop\tbackups:read,backups:create\t*\t" in listed
    assert key.split("_", 2)[2] not in listed
    app = create_app(load_settings())
    transport = httpx.ASGITransport(app=app)
    headers = {"Authorization": f"Bearer {key}"}
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://t") as api,
    ):
        before = await api.get("/api/backup/list", headers=headers)
        assert main(["api-key", "revoke", key_id]) == 0
        after = await api.get("/api/backup/list", headers=headers)
    assert capsys.readouterr().out.strip().endswith(f"revoked {key_id}")
    assert before.status_code == 200
    assert after.status_code == 401
    assert main(["api-key", "revoke", "0123456789abcdef"]) == 3
    assert main(["keys"]) == 0  # still the age keys
    assert "PGKEEP_AGE_RECIPIENTS" in capsys.readouterr().out
