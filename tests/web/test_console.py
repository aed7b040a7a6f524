"""The web console in a real browser: Debian's Chromium, driven by Playwright, against a real
`pgkeep serve` process. Screenshots are kept in test-artifacts/."""

from __future__ import annotations

import gzip
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pyrage
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from pgkeep.core import encryption
from pgkeep.postgres.cluster import ThrowawayCluster
from tests.conftest import SECRET
from tests.test_serve_process import _token, serving, slow_server_env

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


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (make test installs it when run as root)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def console(
    slow_database: str, backup_dir: Path, cluster: ThrowawayCluster, tmp_path: Path
) -> Iterator[str]:
    env = slow_server_env(slow_database, backup_dir, cluster)
    with serving(env, tmp_path / "server.log") as base:
        yield base


def _shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"console-{name}.png"), full_page=True)


def test_console_full_flow(
    browser: Browser, console: str, cluster: ThrowawayCluster, tmp_path: Path
) -> None:
    page = browser.new_page(base_url=console, accept_downloads=True)
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))

    response = page.goto("/")
    assert response is not None
    assert "script-src 'self'" in response.headers["content-security-policy"]
    page.get_by_label("API token (OWNER)").fill(_token())
    page.get_by_role("button", name="Sign in").click()
    page.get_by_text("No backups yet").wait_for()
    _shot(page, "1-signed-in")

    # Create, and watch the bar move while the dump runs.
    page.get_by_role("button", name="Create backup").click()
    bar = page.locator("#progress")
    values: set[float] = set()
    page.locator("#job").wait_for()  # (wait_for_function would need 'unsafe-eval': the CSP says no)
    while page.locator("#job").is_visible():
        value = float(bar.get_attribute("value") or 0) if bar.is_visible() else 0
        if 0 < value < 100:
            values.add(value)
        if len(values) == 2:
            _shot(page, "2-progress")
        page.wait_for_timeout(250)
    assert len(values) >= 3, values
    message = page.locator("#message")
    assert message.inner_text().startswith("Backup backup-")
    row = page.locator("#backups tbody tr")
    # The list is fetched again after the message is shown: wait for it (CI saw 0 rows
    # when counting at once).
    expect(row).to_have_count(1, timeout=10_000)
    name = row.get_attribute("data-filename") or ""
    assert name.endswith(".sql.gz")
    _shot(page, "3-created")

    # Download through a single-use ticket link: the file is the backup.
    with page.expect_download() as download_info:
        page.get_by_role("button", name=f"Download {name}").click()
    saved = tmp_path / "downloaded.sql.gz"
    download_info.value.save_as(saved)
    assert gzip.decompress(saved.read_bytes()).startswith(b"--\n-- PostgreSQL database dump")

    page.get_by_role("button", name=f"Verify {name}").click()
    page.locator("#backups .badge.ok", has_text="verified").wait_for()
    assert "verified: manifest, sha256, readable ok" in message.inner_text()

    # Restore after typing the target database's name.
    page.once("dialog", lambda d: d.accept("console_copy"))
    page.get_by_role("button", name=f"Restore {name}").click()
    page.get_by_text("Restored into console_copy").wait_for(timeout=120_000)
    with psycopg.connect(cluster.url("console_copy")) as conn:
        assert conn.execute("SELECT count(*) FROM big").fetchone() == (1_000_000,)

    # An API error appears as a readable message: the database now exists.
    page.once("dialog", lambda d: d.accept("console_copy"))
    page.get_by_role("button", name=f"Restore {name}").click()
    error = page.locator("#error")
    error.get_by_text("database 'console_copy' already exists").wait_for()
    _shot(page, "4-error")
    cluster.execute("DROP DATABASE console_copy WITH (FORCE)")

    # Narrow screen: usable at 375 px, nothing wider than the viewport.
    page.set_viewport_size({"width": 375, "height": 740})
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 375
    _shot(page, "5-narrow")
    page.set_viewport_size({"width": 1100, "height": 800})

    # Delete after confirmation; a dismissed confirmation deletes nothing.
    page.once("dialog", lambda d: d.dismiss())
    page.get_by_role("button", name=f"Delete {name}").click()
    assert page.locator("#backups tbody tr").count() == 1
    page.once("dialog", lambda d: d.accept())
    page.get_by_role("button", name=f"Delete {name}").click()
    page.get_by_text("No backups yet").wait_for()
    _shot(page, "6-deleted")

    # The one failed request the flow provokes on purpose is the 409 above.
    assert [p for p in problems if "409 (Conflict)" not in p] == [], problems
    # The token never went into a URL: the server's access log shows no token parameter.
    assert "token=" not in httpx.get(f"{console}/healthz").text


def test_console_keyboard_sign_in(browser: Browser, console: str) -> None:
    page = browser.new_page(base_url=console)
    page.goto("/")
    # The token field has focus on arrival; type and submit with the keyboard alone.
    assert page.evaluate("document.activeElement.id") == "token"
    page.keyboard.type(_token())
    page.keyboard.press("Enter")
    page.get_by_role("heading", name="Backups").wait_for()
    page.reload()  # sessionStorage keeps the tab signed in
    page.get_by_role("heading", name="Backups").wait_for()
    page.get_by_role("button", name="Sign out").click()
    page.get_by_label("API token (OWNER)").wait_for()


def test_console_says_why_a_token_was_refused(browser: Browser, console: str) -> None:
    """Every `make run` restart makes an open tab's token stale; the form says so."""
    page = browser.new_page(base_url=console)
    page.goto("/")
    page.get_by_label("API token (OWNER)").fill(_token() + "x")  # a signature that fails
    page.get_by_role("button", name="Sign in").click()
    alert = page.locator("#login-error")
    alert.get_by_text("the server refused the token").wait_for()
    assert "invalid token" in alert.inner_text()
    assert "Paste a new one" in alert.inner_text()
    assert page.evaluate("document.activeElement.id") == "token"
    _shot(page, "7-refused-token")


def test_console_with_several_targets(
    browser: Browser, database: str, cluster: ThrowawayCluster, tmp_path: Path
) -> None:
    config = tmp_path / "pgkeep.toml"
    recipient = str(pyrage.x25519.Identity.generate().to_public())
    config.write_text(
        f'backup_dir = "{tmp_path / "store"}"\npg_bin_dir = "{cluster.bin_dir}"\n'
        f'[targets.shop]\ndatabase_url = "{database}"\n'
        f'[targets.crm]\ndatabase_url = "{database}"\nschedule = "0 3 * * *"\n'
        f'age_recipients = ["{recipient}"]\n'  # crm's backups only are encrypted
    )
    env = {"PGKEEP_CONFIG": str(config), "PGKEEP_JWT_SECRET": SECRET}
    with serving(env, tmp_path / "server.log") as base:
        page = browser.new_page(base_url=base)
        page.goto("/")
        page.get_by_label("API token (OWNER)").fill(_token())
        page.get_by_role("button", name="Sign in").click()
        overview = page.locator("#targets tbody tr")
        overview.first.wait_for()
        assert sorted(overview.evaluate_all("rows => rows.map(r => r.dataset.target)")) == [
            "crm",
            "shop",
        ]
        crm = page.locator('#targets tr[data-target="crm"]')
        assert "reachable" in crm.inner_text()
        assert "not scheduled" not in crm.inner_text()  # crm has a schedule: its next run
        page.get_by_label("Show backups of").select_option("crm")
        page.get_by_role("button", name="Create backup").click()
        page.locator('#backups tbody tr[data-target="crm"]').wait_for(timeout=60_000)
        page.get_by_label("Show backups of").select_option("shop")
        page.get_by_text("No backups yet").wait_for()
        page.get_by_label("Show backups of").select_option("*")
        row = page.locator("#backups tbody tr")
        row.first.wait_for()
        assert row.count() == 1
        assert row.first.get_attribute("data-target") == "crm"
        lock = row.first.get_by_text("encrypted", exact=True)
        assert lock.get_attribute("title") == f"age, to {encryption.fingerprint(recipient)}"
        assert "crm" in page.locator("#targets tr[data-target='crm']").inner_text()
        _shot(page, "8-targets")
