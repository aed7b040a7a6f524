"""The audit trail's page over HTTP: filters by action, target and who acted, paging by
offset and by seq, and the chain's verification in the answer, broken when an entry is
edited on disk."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.anyio


async def test_audit_filters_pages_and_says_whether_the_chain_holds(
    api: httpx.AsyncClient, auth: dict[str, str], backup_dir: Path
) -> None:
    name = (await api.post("/api/backup/create", headers=auth)).json()["filename"]
    await api.post(f"/api/backup/{name}/pin", headers=auth)
    await api.delete(f"/api/backup/{name}/pin", headers=auth)
    await api.delete(f"/api/backup/{name}")  # no token: refused at the edge, who unknown
    whole = (await api.get("/api/backup/audit", headers=auth)).json()
    assert whole["chain"] == {
        "ok": True,
        "details": f"intact: {whole['total']} entries",
        "entries": whole["total"],
        "notes": [],
    }
    target = whole["entries"][-1]["target"]

    pins = (await api.get("/api/backup/audit?action=pin", headers=auth)).json()
    assert [(e["action"], e["result"]) for e in pins["entries"]] == [
        ("pin", "succeeded"),
        ("pin", "started"),
    ]
    assert pins["total"] == 2
    mine = (await api.get("/api/backup/audit?actor=alice&limit=2", headers=auth)).json()
    assert all(e["who"] == "alice" for e in mine["entries"])
    assert (len(mine["entries"]), mine["total"]) == (2, whole["total"] - 1)
    rest = (await api.get("/api/backup/audit?actor=alice&offset=2", headers=auth)).json()
    assert [e["seq"] for e in mine["entries"] + rest["entries"]] == sorted(
        (e["seq"] for e in whole["entries"] if e["who"] == "alice"), reverse=True
    )
    of_target = (await api.get(f"/api/backup/audit?target={target}", headers=auth)).json()
    assert {e["target"] for e in of_target["entries"]} == {target}
    newest = whole["entries"][0]["seq"]
    older = (await api.get(f"/api/backup/audit?before={newest - 1}", headers=auth)).json()
    assert [e["seq"] for e in older["entries"]] == list(range(newest - 2, 0, -1))
    assert (await api.get("/api/backup/audit?action=nothing", headers=auth)).json()["entries"] == []

    path = backup_dir / "pgkeep-audit.jsonl"
    path.write_text(path.read_text().replace('"action": "pin"', '"action": "pinned"', 1))
    broken = (await api.get("/api/backup/audit", headers=auth)).json()["chain"]
    assert broken["ok"] is False
    assert "content does not match its hash" in broken["details"]
