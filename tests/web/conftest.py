"""The console's browser tests share one real `pgkeep serve` (the fleet) and one Chromium for
the session: Debian's Chromium, driven by Playwright. Screenshots go to test-artifacts/."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Browser, Page, ViewportSize, sync_playwright

from pgkeep.throwaway.cluster import ThrowawayCluster
from pgkeep.throwaway.s3 import ThrowawayS3
from tests.conftest import SAMPLE_SQL, SECRET
from tests.test_serve_process import _token, serving

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).parents[2] / "test-artifacts"
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
WIDE = ViewportSize(width=1400, height=900)
NARROW = ViewportSize(width=375, height=740)
SIGN_IN = "OWNER token or API key"
# Databases the tests restore into: dropped when the fleet goes.
RESTORED = ("ui_copy", "ui_purchases", "ui_limited")


@dataclass(frozen=True)
class Fleet:
    base: str
    token: str
    store: Path
    offsite: ThrowawayS3

    def get(self, path: str, **params: str) -> Any:
        auth = {"Authorization": f"Bearer {self.token}"}
        response = httpx.get(f"{self.base}{path}", params=params, headers=auth, timeout=60)
        response.raise_for_status()
        return response.json()

    def patch(self, path: str, body: dict[str, Any], **params: str) -> httpx.Response:
        auth = {"Authorization": f"Bearer {self.token}"}
        return httpx.patch(f"{self.base}{path}", params=params, json=body, headers=auth, timeout=60)

    def post(self, path: str, body: dict[str, Any] | None = None, **params: str) -> httpx.Response:
        auth = {"Authorization": f"Bearer {self.token}"}
        return httpx.post(f"{self.base}{path}", params=params, json=body, headers=auth, timeout=120)


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (make test installs it when run as root)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        yield browser
        browser.close()


def _config(tmp: Path, cluster: ThrowawayCluster, slow: str, offsite: ThrowawayS3) -> Path:
    config = tmp / "pgkeep.toml"
    config.write_text(
        f'backup_dir = "{tmp / "store"}"\npg_bin_dir = "{cluster.bin_dir}"\n'
        f'[targets.shop]\ndatabase_url = "{cluster.url("ui_shop")}"\nschedule = "0 3 * * *"\n'
        f'[targets.crm]\ndatabase_url = "{cluster.url("ui_crm")}"\ncopy_to = ["offsite"]\n'
        f'[targets.ghost]\ndatabase_url = "{cluster.url("ui_missing")}"\n'
        f'[targets.lost]\ndatabase_url = "{cluster.url("ui_lost")}"\n'
        f'[targets.old]\ndatabase_url = "{cluster.url("ui_shop")}"\nstale_after = "2s"\n'
        f'[targets.big]\ndatabase_url = "{slow}"\n'
        f'[targets.parts]\ndatabase_url = "{cluster.url("ui_parts")}"\n'
        f'[servers.main]\nurl = "{cluster.url()}"\ninclude = ["ui_none"]\nglobals = true\n'
        f'[stores.offsite]\nurl = "s3://offsite/copies"\nendpoint_url = "{offsite.endpoint}"\n'
        'region = "us-east-1"\n'
    )
    return config


@pytest.fixture(scope="session")
def fleet(
    cluster: ThrowawayCluster, slow_database: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Fleet]:
    """shop, crm (their own small databases; crm copied to offsite, an S3 store), ghost and
    lost (databases that do not exist; ghost's create failed), old (stale after 2 s), big
    (slow to dump), parts (the sample shop, for table restores and drift) and main (a
    server's globals), with backups in known states:
    crm's test-restored, shop's checksum-only and one corrupted on disk, main's globals."""
    tmp = tmp_path_factory.mktemp("console")
    for name in ("ui_shop", "ui_crm"):
        cluster.create_database(name)
        cluster.execute(
            "CREATE TABLE item AS SELECT i, md5(i::text) AS a FROM generate_series(1, 500) i",
            name,
        )
    cluster.create_database("ui_parts")  # the sample shop: three tables, two foreign keys
    cluster.execute(SAMPLE_SQL.read_text(), "ui_parts")
    offsite = ThrowawayS3()
    offsite.start()
    offsite.create_bucket("offsite")
    env = {
        "AWS_ACCESS_KEY_ID": offsite.access_key,
        "AWS_SECRET_ACCESS_KEY": offsite.secret_key,
        "PGKEEP_CONFIG": str(_config(tmp, cluster, slow_database, offsite)),
        "PGKEEP_JWT_SECRET": SECRET,
        "PGKEEP_STATE_DIR": str(tmp / "state"),
        "PGKEEP_SHUTDOWN_GRACE_SECONDS": "2",
        "PGKEEP_RESTORE_REPLACE_ALLOW": "ui_copy",
    }
    try:
        with serving(env, tmp / "server.log") as base:
            fleet = Fleet(base, _token(), tmp / "store", offsite)
            _arrange(fleet)
            yield fleet
    finally:
        offsite.stop()
        for name in ("ui_shop", "ui_crm", "ui_parts", *RESTORED):
            cluster.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def create(fleet: Fleet, target: str) -> str:
    response = fleet.post("/api/backup/create", target=target)
    assert response.status_code == 200, response.text
    return str(response.json()["filename"])


def _arrange(fleet: Fleet) -> None:
    create(fleet, "old")  # stale two seconds later (waited for below)
    crm = create(fleet, "crm")
    fleet.post(f"/api/backup/{crm}/verify", {"restore": True}, target="crm").raise_for_status()
    checked, damaged = create(fleet, "shop"), create(fleet, "shop")
    create(fleet, "shop")  # never verified
    fleet.post(f"/api/backup/{checked}/verify", target="shop").raise_for_status()
    labels = {"labels": {"reason": "pre-migration"}}
    fleet.patch(f"/api/backup/{checked}", labels, target="shop").raise_for_status()
    path = next(fleet.store.rglob(damaged))
    path.write_bytes(path.read_bytes()[:-40] + b"x" * 40)  # a corrupted primary
    fleet.post(f"/api/backup/{damaged}/verify", target="shop").raise_for_status()
    assert fleet.post("/api/backup/create", target="ghost").status_code >= 500
    create(fleet, "main")
    deadline = time.monotonic() + 30
    while status_of(fleet, "old") != "stale":  # its stale_after is 2 s
        assert time.monotonic() < deadline, "old never read as stale"
        time.sleep(0.2)


def status_of(fleet: Fleet, target: str) -> str:
    rows = fleet.get("/api/backup/targets")["targets"]
    return str(next(r["status"] for r in rows if r["name"] == target))


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"console-{name}.png"), full_page=True)


def both_widths(page: Page, name: str) -> None:
    """A screenshot at 1400 px and at 375 px; nothing wider than the viewport at either."""
    for size, label in ((WIDE, "1400"), (NARROW, "375")):
        page.set_viewport_size(size)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= size["width"], (name, label, width)
        shot(page, f"{name}-{label}")
    page.set_viewport_size(WIDE)


def no_serious_violations(page: Page) -> None:
    results = Axe().run(page)
    serious = [
        (v["id"], v["help"], [n["target"] for n in v["nodes"]][:3])
        for v in results.response["violations"]
        if v["impact"] in ("serious", "critical")
    ]
    assert serious == [], serious


def signed_in(
    browser: Browser, fleet: Fleet, hash_: str = "", token: str = ""
) -> tuple[Page, list[str]]:
    """A page signed in with the fleet's OWNER token (or `token`), and the errors it logs."""
    page = browser.new_page(base_url=fleet.base, viewport=WIDE, accept_downloads=True)
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.goto(f"/{hash_}")
    page.get_by_label(SIGN_IN).fill(token or fleet.token)
    page.get_by_role("button", name="Sign in").click()
    return page, problems


def view(page: Page, name: str) -> None:
    page.locator(f'#view [data-view="{name}"]').wait_for()
