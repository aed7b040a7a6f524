"""The web console in a real browser: Debian's Chromium, driven by Playwright, against one
real `pgkeep serve` process for the session (tests/web/conftest.py), with a fleet of targets
in every state the API can report (one failing: its database does not exist). Screenshots
go to test-artifacts/.

The page is checked against the API's own answers: each `data-status` and `data-verified`
is what `/api/backup/targets` and `/api/backup/list` say, never more."""

from __future__ import annotations

import re
import time
from pathlib import Path

import jwt
import psycopg
from playwright.sync_api import Browser, Dialog, ViewportSize, expect

from pgkeep.http.routes.console import _FILES
from pgkeep.throwaway.cluster import ThrowawayCluster
from tests.conftest import SECRET
from tests.web.conftest import (
    SIGN_IN,
    WIDE,
    Fleet,
    both_widths,
    create,
    no_serious_violations,
    shot,
    signed_in,
    view,
)

WEB = Path(__file__).parents[2] / "src" / "pgkeep" / "web"


def test_console_overview_shows_each_target_as_the_api_does(browser: Browser, fleet: Fleet) -> None:
    page, problems = signed_in(browser, fleet)
    view(page, "overview")
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
    no_serious_violations(page)
    both_widths(page, "overview")
    assert problems == []


def test_console_target_view_shows_verification_as_the_api_does(
    browser: Browser, fleet: Fleet
) -> None:
    page, problems = signed_in(browser, fleet, "#/targets/shop")
    view(page, "target")
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
            no_serious_violations(page)
            both_widths(page, "target")
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
    page, problems = signed_in(browser, fleet, "#/targets/crm")
    view(page, "target")
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
    page, problems = signed_in(browser, fleet, "#/targets/big")
    view(page, "target")
    page.get_by_label("Compression").select_option("gzip")  # slower: time to watch and cancel
    page.get_by_role("button", name="Create backup").click()
    job = page.locator("#job")
    expect(job).to_have_attribute("data-status", "running", timeout=30_000)
    text = page.locator("#progress-text")
    expect(text).not_to_contain_text(" 0.0 MB", timeout=30_000)  # bytes move while it runs
    shot(page, "progress-1400")
    page.get_by_role("button", name="Cancel", exact=True).first.click()
    expect(job).to_have_attribute("data-status", "cancelled", timeout=30_000)
    expect(page.locator("#message")).to_contain_text("cancelled")
    assert fleet.get("/api/backup/list", target="big")["count"] == 0
    assert problems == []


def test_console_jobs_view_is_live_and_cancels(browser: Browser, fleet: Fleet) -> None:
    """A create started elsewhere (the API) shows as running in the jobs view, which keeps
    itself current; cancelled from there, its row turns cancelled without a reload."""
    page, problems = signed_in(browser, fleet, "#/jobs?kind=create")
    view(page, "jobs")
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
    page, problems = signed_in(browser, fleet, "#/jobs")
    view(page, "jobs")
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
    view(page, "jobs")
    no_serious_violations(page)
    both_widths(page, "jobs")

    page.get_by_role("link", name="Audit").click()
    view(page, "audit")
    answer = fleet.get("/api/backup/audit", limit="50")
    expect(page.locator("#view tr[data-action]")).to_have_count(len(answer["entries"]))
    assert answer["chain"]["ok"] is True
    chain = page.locator('#view [data-chain="ok"]')
    expect(chain).to_contain_text(answer["chain"]["details"])
    # Paged: five at a time, older and newer, as the API pages them.
    page.goto("/#/audit?limit=5")
    view(page, "audit")
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
    no_serious_violations(page)
    both_widths(page, "audit")

    page.get_by_role("link", name="Storage").click()
    view(page, "storage")
    stores = fleet.get("/api/backup/storage")["stores"]
    expect(page.locator("#view [data-store]")).to_have_count(len(stores))
    no_serious_violations(page)
    both_widths(page, "storage")
    assert problems == []


def test_console_pins_and_deletes_saying_from_which_stores(browser: Browser, fleet: Fleet) -> None:
    name = create(fleet, "crm")
    _copied(fleet, "crm", name)
    page, problems = signed_in(browser, fleet, "#/targets/crm")
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
    name = create(fleet, "crm")
    _copied(fleet, "crm", name)
    fleet.offsite.pause()
    try:
        _until_down(fleet, "crm")
        page, problems = signed_in(browser, fleet)
        crm = page.locator('#view tr[data-target="crm"]')
        expect(crm).to_contain_text("store offsite down")
        expect(page.locator('#view tr[data-target="shop"]')).not_to_contain_text("down")
        page.goto("/#/storage")
        expect(page.locator('#view [data-store="offsite"]')).to_have_attribute("data-ok", "false")
        expect(page.locator('#view [data-store="primary"]')).to_have_attribute("data-ok", "true")
        both_widths(page, "store-down")
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
    page.get_by_label(SIGN_IN).fill(_expired_token())
    page.get_by_role("button", name="Sign in").click()
    alert = page.locator("#login-error")
    expect(alert).to_contain_text("Signature has expired")
    assert "Not enough segments" not in alert.inner_text()
    assert page.evaluate("document.activeElement.id") == "token"
    expect(page.get_by_role("navigation", name="Views")).to_be_hidden()
    shot(page, "expired-1400")
    # A good sign-in clears the old error; navigating does not resend a dead token.
    page.get_by_label(SIGN_IN).fill(fleet.token)
    page.get_by_role("button", name="Sign in").click()
    view(page, "overview")
    expect(alert).to_have_text("")
    # The token expires while signed in: the next request signs out, with the reason.
    page.evaluate(f"sessionStorage.setItem('pgkeep.token', '{_expired_token()}')")
    page.get_by_role("link", name="Jobs").click()
    expect(alert).to_contain_text("Signature has expired")
    assert all(h != "Bearer null" and h != "Bearer " for h in sent), sent
    assert page.locator("#console").is_hidden()


def test_console_keeps_the_view_when_a_request_fails(browser: Browser, fleet: Fleet) -> None:
    page, problems = signed_in(browser, fleet)
    view(page, "overview")
    page.goto("/#/targets/nowhere")
    expect(page.locator("#error")).to_contain_text("no target 'nowhere'")
    assert page.locator('#view [data-view="overview"]').is_visible()  # not blanked
    page.goto("/#/jobs")
    view(page, "jobs")
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
    view(page, "overview")
    page.reload()  # sessionStorage keeps the tab signed in
    view(page, "overview")
    page.get_by_role("button", name="Sign out").click()
    page.get_by_label(SIGN_IN).wait_for()


def test_console_serves_every_file_it_imports_and_no_absolute_url() -> None:
    html = (WEB / "index.html").read_text()
    for absolute in ("http://", "https://", "xmlns", "//"):
        assert absolute not in html
    imported = {"app.js", "app.css"}
    for module in WEB.glob("*.js"):
        imported |= set(re.findall(r'from "\./([a-z]+\.js)"', module.read_text()))
    on_disk = {p.name for p in WEB.iterdir() if p.name != "index.html"}
    assert imported == on_disk == set(_FILES)
