"""The web console in a real browser: Debian's Chromium, driven by Playwright, against one
real `pgkeep serve` process for the module, with a fleet of targets in every state the API
can report (one failing: its database does not exist). Screenshots go to test-artifacts/.

The page is checked against the API's own answers: each `data-status` and `data-verified`
is what `/api/backup/targets` and `/api/backup/list` say, never more."""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import psycopg
import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import (
    Browser,
    Dialog,
    Page,
    ViewportSize,
    expect,
    sync_playwright,
)

from pgkeep.http.routes.console import _FILES
from pgkeep.throwaway.cluster import ThrowawayCluster
from pgkeep.throwaway.s3 import ThrowawayS3
from tests.conftest import SECRET
from tests.test_serve_process import _token, serving

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).parents[2] / "test-artifacts"
WEB = Path(__file__).parents[2] / "src" / "pgkeep" / "web"
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


@pytest.fixture(scope="module")
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
        f'[servers.main]\nurl = "{cluster.url()}"\ninclude = ["ui_none"]\nglobals = true\n'
        f'[stores.offsite]\nurl = "s3://offsite/copies"\nendpoint_url = "{offsite.endpoint}"\n'
        'region = "us-east-1"\n'
    )
    return config


@pytest.fixture(scope="module")
def fleet(
    cluster: ThrowawayCluster, slow_database: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Fleet]:
    """shop, crm (their own small databases; crm copied to offsite, an S3 store), ghost and
    lost (databases that do not exist; ghost's create failed), old (stale after 2 s), big
    (slow to dump) and main (a server's globals), with backups in known states:
    crm's test-restored, shop's checksum-only and one corrupted on disk, main's globals."""
    tmp = tmp_path_factory.mktemp("console")
    for name in ("ui_shop", "ui_crm"):
        cluster.create_database(name)
        cluster.execute(
            "CREATE TABLE item AS SELECT i, md5(i::text) AS a FROM generate_series(1, 500) i",
            name,
        )
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
        for name in ("ui_shop", "ui_crm", "ui_copy"):
            cluster.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _create(fleet: Fleet, target: str) -> str:
    response = fleet.post("/api/backup/create", target=target)
    assert response.status_code == 200, response.text
    return str(response.json()["filename"])


def _arrange(fleet: Fleet) -> None:
    _create(fleet, "old")  # stale two seconds later (waited for below)
    crm = _create(fleet, "crm")
    fleet.post(f"/api/backup/{crm}/verify", {"restore": True}, target="crm").raise_for_status()
    checked, damaged = _create(fleet, "shop"), _create(fleet, "shop")
    _create(fleet, "shop")  # never verified
    fleet.post(f"/api/backup/{checked}/verify", target="shop").raise_for_status()
    labels = {"labels": {"reason": "pre-migration"}}
    fleet.patch(f"/api/backup/{checked}", labels, target="shop").raise_for_status()
    path = next(fleet.store.rglob(damaged))
    path.write_bytes(path.read_bytes()[:-40] + b"x" * 40)  # a corrupted primary
    fleet.post(f"/api/backup/{damaged}/verify", target="shop").raise_for_status()
    assert fleet.post("/api/backup/create", target="ghost").status_code >= 500
    _create(fleet, "main")
    deadline = time.monotonic() + 30
    while _status(fleet, "old") != "stale":  # its stale_after is 2 s
        assert time.monotonic() < deadline, "old never read as stale"
        time.sleep(0.2)


def _status(fleet: Fleet, target: str) -> str:
    rows = fleet.get("/api/backup/targets")["targets"]
    return str(next(r["status"] for r in rows if r["name"] == target))


def _shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"console-{name}.png"), full_page=True)


def _both_widths(page: Page, name: str) -> None:
    """A screenshot at 1400 px and at 375 px; nothing wider than the viewport at either."""
    for size, label in ((WIDE, "1400"), (NARROW, "375")):
        page.set_viewport_size(size)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= size["width"], (name, label, width)
        _shot(page, f"{name}-{label}")
    page.set_viewport_size(WIDE)


def _no_serious_violations(page: Page) -> None:
    results = Axe().run(page)
    serious = [
        (v["id"], v["help"], [n["target"] for n in v["nodes"]][:3])
        for v in results.response["violations"]
        if v["impact"] in ("serious", "critical")
    ]
    assert serious == [], serious


def _page(browser: Browser, fleet: Fleet, hash_: str = "") -> tuple[Page, list[str]]:
    page = browser.new_page(base_url=fleet.base, viewport=WIDE, accept_downloads=True)
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.goto(f"/{hash_}")
    page.get_by_label("API token (OWNER)").fill(fleet.token)
    page.get_by_role("button", name="Sign in").click()
    return page, problems


def _view(page: Page, name: str) -> None:
    page.locator(f'#view [data-view="{name}"]').wait_for()


def test_console_overview_shows_each_target_as_the_api_does(browser: Browser, fleet: Fleet) -> None:
    page, problems = _page(browser, fleet)
    _view(page, "overview")
    answer = fleet.get("/api/backup/targets")
    rows = page.locator("#view tr[data-target]")
    expect(rows).to_have_count(answer["count"])
    for target in answer["targets"]:
        row = page.locator(f'#view tr[data-target="{target["name"]}"]')
        assert row.get_attribute("data-status") == target["status"], target
    statuses = {t["name"]: t["status"] for t in answer["targets"]}
    assert statuses["ghost"] == "failing"  # its create failed
    assert statuses["lost"] == "unreachable"  # no job yet, and no database
    assert statuses["old"] == "stale"  # its backup is older than its stale_after
    assert {statuses["shop"], statuses["crm"]} == {"ok"}
    # The cause is the server's own, whole: the first line of the connection's error.
    ghost = page.locator('#view tr[data-target="ghost"]')
    assert 'database "ui_missing" does not exist' in ghost.inner_text()
    # Schedules are in UTC; the last backup's time is relative, with UTC on hover.
    shop = page.locator('#view tr[data-target="shop"]')
    assert re.search(r"\d{4}-\d\d-\d\d 03:00 UTC", shop.inner_text())
    created = shop.locator("time").first
    assert (created.get_attribute("title") or "").endswith(" UTC")
    assert re.fullmatch(r"(just now|\d+ (s|min) ago)", created.inner_text())
    totals = page.locator('[data-total="failing"] dd')
    assert totals.inner_text() == str(answer["totals"]["failing"])
    assert shop.locator("svg.spark").count() == 1  # three backups: a trend
    # At 1400 and 1920 px the table uses the width (the old page stopped at 1050 px).
    for width in (1400, 1920):
        page.set_viewport_size(ViewportSize(width=width, height=900))
        table = page.locator("#view table").bounding_box()
        assert table is not None
        assert table["width"] > width - 100, (width, table)
    page.set_viewport_size(WIDE)
    _no_serious_violations(page)
    _both_widths(page, "overview")
    assert problems == []


def test_console_target_view_shows_verification_as_the_api_does(
    browser: Browser, fleet: Fleet
) -> None:
    page, problems = _page(browser, fleet, "#/targets/shop")
    _view(page, "target")
    seen: set[str] = set()
    for target in ("shop", "crm", "main"):
        page.goto(f"/#/targets/{target}")
        page.locator(f'#view [data-view="target"][data-target="{target}"]').wait_for()
        listed = fleet.get("/api/backup/list", target=target)["backups"]
        rows = page.locator("#view tr[data-backup]")
        expect(rows).to_have_count(len(listed))
        names = rows.evaluate_all("rows => rows.map(r => r.dataset.backup)")
        assert names == [b["filename"] for b in listed]  # newest first, as the API
        for backup in listed:
            row = page.locator(f'#view tr[data-backup="{backup["filename"]}"]')
            state = row.get_attribute("data-verified")
            assert state == backup["verification"]["state"], backup
            seen.add(state or "")
            for key, value in backup["labels"].items():
                expect(row.get_by_role("list", name="Labels")).to_contain_text(f"{key}={value}")
            restore = row.get_by_role("button", name=f"Restore {backup['filename']}", exact=True)
            assert restore.count() == (0 if backup["kind"] == "globals" else 1), backup
        if target == "shop":
            # One bar per backup of the trend the API answers, each titled with its size.
            [row] = [t for t in fleet.get("/api/backup/targets")["targets"] if t["name"] == "shop"]
            bars = page.locator("#view .chart rect.bar")
            expect(bars).to_have_count(len(row["trend"]))
            title = bars.first.locator("title").text_content() or ""
            assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC: [\d.]+ K?B, \d+ ms", title)
            _no_serious_violations(page)
            _both_widths(page, "target")
    assert seen == {"restored", "checksum", "failed", "none"}
    assert page.get_by_text("reason=pre-migration").count() == 0  # shown on shop's page only
    page.goto("/#/targets/shop")
    expect(page.get_by_text("reason=pre-migration")).to_have_count(1)
    # The corrupted primary reads as failed, naming the check: never "primary … ok".
    page.goto("/#/targets/shop")
    failed = page.locator('#view tr[data-verified="failed"]')
    failed.wait_for()
    assert "sha256" in failed.inner_text() or "primary" in failed.inner_text()
    assert problems == []


def test_console_creates_verifies_and_restores_as_jobs(
    browser: Browser, fleet: Fleet, cluster: ThrowawayCluster, tmp_path: Path
) -> None:
    page, problems = _page(browser, fleet, "#/targets/crm")
    _view(page, "target")
    before = page.locator("#view tr[data-backup]").count()
    page.get_by_role("button", name="Create backup").click()
    expect(page.locator("#job")).to_have_attribute("data-status", "succeeded", timeout=60_000)
    expect(page.locator("#message")).to_contain_text("created")
    rows = page.locator("#view tr[data-backup]")
    expect(rows).to_have_count(before + 1)
    name = rows.first.get_attribute("data-backup") or ""
    assert rows.first.get_attribute("data-verified") == "none"
    jobs = fleet.get("/api/backup/jobs", kind="create")["jobs"]
    assert any(j["filename"] == name and j["status"] == "succeeded" for j in jobs)

    # A checksum verify reads as checksum only; a test restore as restored.
    row = page.locator(f'#view tr[data-backup="{name}"]')
    page.get_by_role("button", name=f"Verify {name}", exact=True).click()
    expect(row).to_have_attribute("data-verified", "checksum", timeout=60_000)
    page.get_by_role("button", name=f"Verify with a test restore {name}").click()
    expect(row).to_have_attribute("data-verified", "restored", timeout=60_000)
    expect(row).to_contain_text("500 rows proven")

    # Download through a single-use ticket link: the file is the backup.
    with page.expect_download() as download_info:
        page.get_by_role("button", name=f"Download {name}").click()
    saved = tmp_path / name
    download_info.value.save_as(saved)
    assert saved.read_bytes().startswith(b"--\n-- PostgreSQL database dump")

    # Restore into a new database through the dialog; into it again is refused (409);
    # over it only once its name is typed again.
    dialog = page.locator("#restore-dialog")
    go = page.get_by_role("button", name="Restore", exact=True)
    page.get_by_role("button", name=f"Restore {name}", exact=True).click()
    page.get_by_label("Database to restore into").fill("ui_copy")
    go.click()
    expect(page.locator("#message")).to_contain_text("Restored", timeout=60_000)
    with psycopg.connect(cluster.url("ui_copy")) as conn:
        assert conn.execute("SELECT count(*) FROM item").fetchone() == (500,)
    page.get_by_role("button", name=f"Restore {name}", exact=True).click()
    page.get_by_label("Database to restore into").fill("ui_copy")
    go.click()
    expect(page.locator("#error")).to_contain_text("database 'ui_copy' already exists")
    cluster.execute("CREATE TABLE marker ()", "ui_copy")
    page.get_by_role("button", name=f"Restore {name}", exact=True).click()
    page.get_by_label("Database to restore into").fill("ui_copy")
    page.get_by_label("Replace the existing database of that name").check()
    expect(go).to_be_disabled()
    page.get_by_label("Type the database's name to confirm").fill("ui_cop")
    expect(go).to_be_disabled()
    page.get_by_label("Type the database's name to confirm").fill("ui_copy")
    go.click()
    expect(dialog).to_be_hidden()
    expect(page.locator("#message")).to_contain_text("Restored", timeout=60_000)
    with psycopg.connect(cluster.url("ui_copy")) as conn:
        assert conn.execute("SELECT to_regclass('marker')").fetchone() == (None,)
        assert conn.execute("SELECT count(*) FROM item").fetchone() == (500,)
    assert [p for p in problems if "409 (Conflict)" not in p] == [], problems


def test_console_follows_and_cancels_a_running_create(browser: Browser, fleet: Fleet) -> None:
    page, problems = _page(browser, fleet, "#/targets/big")
    _view(page, "target")
    page.get_by_label("Compression").select_option("gzip")  # slower: time to watch and cancel
    page.get_by_role("button", name="Create backup").click()
    job = page.locator("#job")
    expect(job).to_have_attribute("data-status", "running", timeout=30_000)
    text = page.locator("#progress-text")
    expect(text).not_to_contain_text(" 0.0 MB", timeout=30_000)  # bytes move while it runs
    _shot(page, "progress-1400")
    page.get_by_role("button", name="Cancel", exact=True).first.click()
    expect(job).to_have_attribute("data-status", "cancelled", timeout=30_000)
    expect(page.locator("#message")).to_contain_text("cancelled")
    assert fleet.get("/api/backup/list", target="big")["count"] == 0
    assert problems == []


def test_console_jobs_view_is_live_and_cancels(browser: Browser, fleet: Fleet) -> None:
    """A create started elsewhere (the API) shows as running in the jobs view, which keeps
    itself current; cancelled from there, its row turns cancelled without a reload."""
    page, problems = _page(browser, fleet, "#/jobs?kind=create")
    _view(page, "jobs")
    slow = {"compression": "gzip", "level": 9}  # several seconds: time to cancel it
    started = fleet.post("/api/backup/create", slow, target="big", **{"async": "true"})
    assert started.status_code == 202, started.text
    job = started.json()["job"]["id"]
    row = page.locator(f'#view tr[data-job="{job}"]')
    expect(row).to_have_attribute("data-status", "running", timeout=15_000)
    row.get_by_role("button", name=f"Cancel job {job}").click()
    expect(row).to_have_attribute("data-status", "cancelled", timeout=30_000)
    assert fleet.get(f"/api/backup/jobs/{job}")["job"]["status"] == "cancelled"
    assert problems == []


def test_console_jobs_audit_and_storage_views(browser: Browser, fleet: Fleet) -> None:
    page, problems = _page(browser, fleet, "#/jobs")
    _view(page, "jobs")
    page.get_by_label("Status").select_option("failed")
    page.wait_for_url(re.compile(r"status=failed"))
    expect(page.locator('#view tr[data-job]:not([data-status="failed"])')).to_have_count(0)
    failed = page.locator('#view tr[data-status="failed"]')
    expected = fleet.get("/api/backup/jobs", status="failed")["jobs"]
    expect(failed).to_have_count(len(expected))
    ghost = failed.filter(has_text="ghost").first
    assert 'database "ui_missing" does not exist' in ghost.inner_text()
    ghost.get_by_role("link", name="ghost").click()
    page.locator('#view [data-view="target"][data-target="ghost"]').wait_for()
    # From a job to its backup: the target's page with that backup marked.
    page.goto("/#/jobs?kind=verify")
    done = page.locator('#view tr[data-status="succeeded"]').first
    backup = done.locator("a .name").first.get_attribute("title") or ""
    done.locator("a", has=page.locator(".name")).click()
    page.locator('#view [data-view="target"]').wait_for()
    expect(page.locator(f'#view tr.focus[data-backup="{backup}"]')).to_have_count(1)
    page.goto("/#/jobs")
    _view(page, "jobs")
    _no_serious_violations(page)
    _both_widths(page, "jobs")

    page.get_by_role("link", name="Audit").click()
    _view(page, "audit")
    answer = fleet.get("/api/backup/audit", limit="50")
    expect(page.locator("#view tr[data-action]")).to_have_count(len(answer["entries"]))
    assert answer["chain"]["ok"] is True
    chain = page.locator('#view [data-chain="ok"]')
    expect(chain).to_contain_text(answer["chain"]["details"])
    # Paged: five at a time, older and newer, as the API pages them.
    page.goto("/#/audit?limit=5")
    _view(page, "audit")
    first = fleet.get("/api/backup/audit", limit="5", offset="0")["entries"]
    second = fleet.get("/api/backup/audit", limit="5", offset="5")["entries"]
    when = page.locator("#view tr[data-action] time")
    expect(when).to_have_count(5)
    assert when.evaluate_all("ts => ts.map(t => t.dateTime)") == [e["at"] for e in first]
    page.get_by_role("button", name="Older").click()
    expect(page.get_by_text(re.compile("^6\u201310 of \\d+$"))).to_be_visible()
    assert when.evaluate_all("ts => ts.map(t => t.dateTime)") == [e["at"] for e in second]
    page.get_by_role("button", name="Newer").click()
    expect(page.get_by_text(re.compile("^1\u20135 of \\d+$"))).to_be_visible()
    page.get_by_label("Action").fill("verify")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url(re.compile(r"action=verify"))
    verifies = fleet.get("/api/backup/audit", action="verify", limit="50")["entries"]
    assert {e["action"] for e in verifies} == {"verify"}
    rows = page.locator("#view tr[data-action]")
    expect(rows).to_have_count(len(verifies))
    assert set(rows.evaluate_all("rows => rows.map(r => r.dataset.action)")) == {"verify"}
    _no_serious_violations(page)
    _both_widths(page, "audit")

    page.get_by_role("link", name="Storage").click()
    _view(page, "storage")
    stores = fleet.get("/api/backup/storage")["stores"]
    expect(page.locator("#view [data-store]")).to_have_count(len(stores))
    _no_serious_violations(page)
    _both_widths(page, "storage")
    assert problems == []


def test_console_pins_and_deletes_saying_from_which_stores(browser: Browser, fleet: Fleet) -> None:
    name = _create(fleet, "crm")
    _copied(fleet, "crm", name)
    page, problems = _page(browser, fleet, "#/targets/crm")
    row = page.locator(f'#view tr[data-backup="{name}"]')
    row.get_by_role("button", name=f"Pin {name}", exact=True).click()
    expect(row.get_by_text("pinned", exact=True)).to_be_visible()
    assert row.get_by_role("button", name=f"Delete {name}").count() == 0  # the API refuses it
    row.get_by_role("button", name=f"Unpin {name}").click()
    expect(row.get_by_role("button", name=f"Delete {name}")).to_be_visible()
    asked: list[str] = []

    def accept(dialog: Dialog) -> None:
        asked.append(dialog.message)
        dialog.accept()

    page.once("dialog", accept)
    row.get_by_role("button", name=f"Delete {name}").click()
    expect(page.locator("#message")).to_have_text(f"Deleted {name} from primary, copy:offsite.")
    assert "from primary, copy:offsite?" in asked[0]
    expect(row).to_have_count(0)
    assert problems == []


def _copied(fleet: Fleet, target: str, name: str) -> None:
    """Until the copy store holds the backup (copies are made after the create answers)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        listed = fleet.get("/api/backup/list", target=target)["backups"]
        if any(b["filename"] == name and all(c["present"] for c in b["copies"]) for b in listed):
            return
        time.sleep(0.2)
    raise AssertionError(f"{name} was not copied")


def _until_down(fleet: Fleet, target: str) -> None:
    """Until the targets route notices the copy store is down (listings are cached briefly)."""
    started = time.monotonic()
    while time.monotonic() - started < 60:
        rows = fleet.get("/api/backup/targets")["targets"]
        row = next(r for r in rows if r["name"] == target)
        if any(s["ok"] is False for s in row["stores"]):
            return
        time.sleep(0.5)
    raise AssertionError(f"the copy store never read as down: {row['stores']}")


def test_console_shows_a_store_that_is_down_on_its_targets(browser: Browser, fleet: Fleet) -> None:
    """The copy store (S3) killed: it shows as down on crm's row and in storage, the rest
    of the page works, and a delete there is shown as partial."""
    name = _create(fleet, "crm")
    _copied(fleet, "crm", name)
    fleet.offsite.pause()
    try:
        _until_down(fleet, "crm")
        page, problems = _page(browser, fleet)
        crm = page.locator('#view tr[data-target="crm"]')
        expect(crm).to_contain_text("store offsite down")
        expect(page.locator('#view tr[data-target="shop"]')).not_to_contain_text("down")
        page.goto("/#/storage")
        expect(page.locator('#view [data-store="offsite"]')).to_have_attribute("data-ok", "false")
        expect(page.locator('#view [data-store="primary"]')).to_have_attribute("data-ok", "true")
        _both_widths(page, "store-down")
        page.goto("/#/targets/crm")
        row = page.locator(f'#view tr[data-backup="{name}"]')
        page.once("dialog", lambda d: d.accept())
        row.get_by_role("button", name=f"Delete {name}").click()
        error = page.locator("#error.partial")
        expect(error).to_contain_text(f"Partly deleted {name}: removed from primary")
        expect(error).to_contain_text("copy:offsite")
    finally:
        fleet.offsite.resume()
    assert [p for p in problems if "502 (Bad Gateway)" not in p] == [], problems


def _expired_token() -> str:
    now = int(time.time())
    claims = {"sub": "ci", "role": "OWNER", "iat": now - 7200, "nbf": now - 7200}
    return jwt.encode(claims | {"exp": now - 3600}, SECRET, algorithm="HS256")


def test_console_signs_out_on_an_expired_token_saying_why(browser: Browser, fleet: Fleet) -> None:
    page = browser.new_page(base_url=fleet.base, viewport=WIDE)
    sent: list[str] = []
    page.on("request", lambda r: sent.append(r.headers.get("authorization", "")))
    page.goto("/")
    page.get_by_label("API token (OWNER)").fill(_expired_token())
    page.get_by_role("button", name="Sign in").click()
    alert = page.locator("#login-error")
    expect(alert).to_contain_text("Signature has expired")
    assert "Not enough segments" not in alert.inner_text()
    assert page.evaluate("document.activeElement.id") == "token"
    expect(page.get_by_role("navigation", name="Views")).to_be_hidden()
    _shot(page, "expired-1400")
    # A good sign-in clears the old error; navigating does not resend a dead token.
    page.get_by_label("API token (OWNER)").fill(fleet.token)
    page.get_by_role("button", name="Sign in").click()
    _view(page, "overview")
    expect(alert).to_have_text("")
    # The token expires while signed in: the next request signs out, with the reason.
    page.evaluate(f"sessionStorage.setItem('pgkeep.token', '{_expired_token()}')")
    page.get_by_role("link", name="Jobs").click()
    expect(alert).to_contain_text("Signature has expired")
    assert all(h != "Bearer null" and h != "Bearer " for h in sent), sent
    assert page.locator("#console").is_hidden()


def test_console_keeps_the_view_when_a_request_fails(browser: Browser, fleet: Fleet) -> None:
    page, problems = _page(browser, fleet)
    _view(page, "overview")
    page.goto("/#/targets/nowhere")
    expect(page.locator("#error")).to_contain_text("no target 'nowhere'")
    assert page.locator('#view [data-view="overview"]').is_visible()  # not blanked
    page.goto("/#/jobs")
    _view(page, "jobs")
    expect(page.locator("#error")).to_have_text("")  # a stale error does not linger
    # pgkeep stops answering while the jobs view refreshes itself: the jobs stay on
    # screen with the reason above them, and the error goes once it answers again.
    rows = page.locator("#view tr[data-job]").count()
    page.route("**/api/backup/jobs*", lambda route: route.abort())
    expect(page.locator("#error")).to_contain_text("pgkeep did not answer")
    assert page.locator("#view tr[data-job]").count() == rows
    page.unroute("**/api/backup/jobs*")
    expect(page.locator("#error")).to_have_text("", timeout=15_000)
    assert [p for p in problems if "ERR_FAILED" not in p] == [], problems


def test_console_keyboard_sign_in(browser: Browser, fleet: Fleet) -> None:
    page = browser.new_page(base_url=fleet.base)
    response = page.goto("/")
    assert response is not None
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp
    assert "unsafe" not in csp  # no inline script or style, no eval
    # The token field has focus on arrival; type and submit with the keyboard alone.
    assert page.evaluate("document.activeElement.id") == "token"
    page.keyboard.type(fleet.token)
    page.keyboard.press("Enter")
    _view(page, "overview")
    page.reload()  # sessionStorage keeps the tab signed in
    _view(page, "overview")
    page.get_by_role("button", name="Sign out").click()
    page.get_by_label("API token (OWNER)").wait_for()


def test_console_serves_every_file_it_imports_and_no_absolute_url() -> None:
    html = (WEB / "index.html").read_text()
    for absolute in ("http://", "https://", "xmlns", "//"):
        assert absolute not in html
    imported = {"app.js", "app.css"}
    for module in WEB.glob("*.js"):
        imported |= set(re.findall(r'from "\./([a-z]+\.js)"', module.read_text()))
    on_disk = {p.name for p in WEB.iterdir() if p.name != "index.html"}
    assert imported == on_disk == set(_FILES)
