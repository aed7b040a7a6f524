"""The console after "someone dropped the production database": a real `pgkeep serve` that
found a database and backed it up, stopped; the database dropped; pgkeep started again. The
overview reads the target `gone` (never failing, stale or unreachable), and its page still
lists the backup, for download, verify or restore."""

from __future__ import annotations

from pathlib import Path

import httpx
from playwright.sync_api import Browser, expect

from pgkeep.throwaway.cluster import ThrowawayCluster
from tests.conftest import SECRET
from tests.test_serve_process import _token, serving
from tests.web.conftest import SIGN_IN, WIDE, both_widths, no_serious_violations


def test_console_shows_a_dropped_databases_target_as_gone_with_its_backups(
    browser: Browser, cluster: ThrowawayCluster, tmp_path: Path
) -> None:
    name = "ui_gone_" + tmp_path.name[-6:].lower().replace("-", "_")
    cluster.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    cluster.create_database(name)
    cluster.execute("CREATE TABLE t (i int); INSERT INTO t VALUES (1)", name)
    config = tmp_path / "pgkeep.toml"
    config.write_text(
        f'backup_dir = "{tmp_path / "store"}"\npg_bin_dir = "{cluster.bin_dir}"\n'
        f'[servers.main]\nurl = "{cluster.url()}"\ninclude = ["{name}"]\n'
    )
    env = {"PGKEEP_CONFIG": str(config), "PGKEEP_JWT_SECRET": SECRET}
    token = _token()
    auth = {"Authorization": f"Bearer {token}"}
    target = f"main.{name}"
    with serving(env, tmp_path / "one.log") as base:
        created = httpx.post(f"{base}/api/backup/create?target={target}", headers=auth, timeout=60)
        assert created.status_code == 200, created.text
    backup = created.json()["filename"]
    cluster.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    with serving(env, tmp_path / "two.log") as base:
        page = browser.new_page(base_url=base, viewport=WIDE)
        problems: list[str] = []
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.goto("/")
        page.get_by_label(SIGN_IN).fill(token)
        page.get_by_role("button", name="Sign in").click()
        row = page.locator(f'#view [data-view="overview"] tr[data-target="{target}"]')
        expect(row).to_have_attribute("data-status", "gone")
        answer = httpx.get(f"{base}/api/backup/targets", headers=auth).json()
        assert [t["status"] for t in answer["targets"] if t["name"] == target] == ["gone"]
        page.goto(f"/#/targets/{target}")
        item = page.locator(f'#view [data-view="target"] [data-backup="{backup}"]')
        expect(item).to_be_visible()
        expect(page.locator("#view [data-gone]")).to_be_visible()
        expect(page.locator("#create")).to_have_count(0)  # nothing new can be backed up
        both_widths(page, "gone")
        no_serious_violations(page)
        page.close()
    assert problems == []
