"""The console signed in with API keys, in Chromium against the session's real `pgkeep
serve` (tests/web/conftest.py): a limited key sees only its targets and the actions its
scopes allow (and the API refuses the rest); the keys view mints a key whose secret is
shown once and works over HTTP, refuses a wider key in the API's words, and revokes one,
which the next request then finds refused (401), and the sign-in page says so."""

from __future__ import annotations

import time
from typing import Any

import httpx
from playwright.sync_api import Browser, Dialog, Page, expect

from tests.web.conftest import (
    SIGN_IN,
    WIDE,
    Fleet,
    both_widths,
    no_serious_violations,
    signed_in,
    view,
)


def mint(fleet: Fleet, **body: Any) -> dict[str, Any]:
    answer = fleet.post("/api/keys", body)
    assert answer.status_code == 201, answer.text
    result: dict[str, Any] = answer.json()
    return result


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _sign_in_refused(browser: Browser, fleet: Fleet, key: str) -> Page:
    page = browser.new_page(base_url=fleet.base, viewport=WIDE)
    page.goto("/")
    page.get_by_label(SIGN_IN).fill(key)
    page.get_by_role("button", name="Sign in").click()
    return page


def test_console_with_a_limited_key_offers_only_what_it_may(browser: Browser, fleet: Fleet) -> None:
    scopes = ["backups:read", "backups:verify", "backups:download"]
    key = mint(fleet, name="ui-shop-reader", scopes=scopes, targets=["shop"])["key"]
    page, problems = signed_in(browser, fleet, token=key)
    view(page, "overview")
    rows = page.locator("#view tr[data-target]")
    expect(rows).to_have_count(1)
    assert rows.get_attribute("data-target") == "shop"
    nav = page.get_by_role("navigation", name="Views")
    expect(nav.get_by_role("link", name="Jobs")).to_be_visible()
    expect(nav.get_by_role("link", name="Audit")).to_have_count(0)  # no audit:read
    expect(nav.get_by_role("link", name="Keys")).to_have_count(0)  # no keys:manage
    expect(page.locator("#whoami")).to_have_text(
        "Signed in as ui-shop-reader (API key: backups:download, backups:read, "
        "backups:verify; shop)"
    )

    page.goto("/#/targets/shop")
    view(page, "target")
    listed = fleet.get("/api/backup/list", target="shop")["backups"]
    expect(page.locator("#view tr[data-backup]")).to_have_count(len(listed))
    expect(page.get_by_role("button", name="Create backup")).to_have_count(0)
    for backup in listed:
        row = page.locator(f'#view tr[data-backup="{backup["filename"]}"]')
        offered = row.get_by_role("button").evaluate_all("bs => bs.map(b => b.textContent)")
        assert offered == ["Download", "Verify", "Test restore"], (backup["filename"], offered)
    # What the console hides, the API refuses: the same key, over HTTP.
    name = listed[0]["filename"]
    for method, path in (
        ("POST", "/api/backup/create?target=shop"),
        ("DELETE", f"/api/backup/{name}?target=shop"),
        ("POST", f"/api/backup/{name}/pin?target=shop"),
        ("GET", "/api/backup/audit"),
    ):
        refused = httpx.request(method, f"{fleet.base}{path}", headers=bearer(key), timeout=30)
        assert refused.status_code == 403, (path, refused.text)
    # A view it may not read, or another target's page: the API's reason, nothing more.
    page.goto("/#/audit")  # not asked for: the page says which scope it lacks
    expect(page.locator('#view [data-view="denied"]')).to_contain_text("needs the scope audit:read")
    page.goto("/#/targets/crm")
    expect(page.locator("#error")).to_contain_text("no target 'crm'")
    page.goto("/#/jobs")
    view(page, "jobs")
    targets = page.locator("#view tr[data-job] td[data-label='Target']").all_inner_texts()
    assert targets
    assert set(targets) == {"shop"}
    assert [p for p in problems if "403" not in p] == [], problems

    # An expired key is back at the sign-in page, saying so.
    short = mint(fleet, name="ui-short", scopes=["backups:read"], expiresIn="1s")["key"]
    time.sleep(1.2)
    expired = _sign_in_refused(browser, fleet, short)
    expect(expired.locator("#login-error")).to_contain_text(
        "the server refused the API key: invalid API key (the key expired)"
    )
    expect(expired.get_by_role("navigation", name="Views")).to_be_hidden()


def test_console_keys_view_mints_shows_once_and_revokes(browser: Browser, fleet: Fleet) -> None:
    page, problems = signed_in(browser, fleet, "#/keys")
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=fleet.base)
    view(page, "keys")
    page.get_by_label("Key name", exact=True).fill("ui-ci")
    page.get_by_label("Targets (comma-separated; empty: every target)").fill("crm")
    page.get_by_label("backups:read", exact=True).check()
    page.get_by_label("backups:create", exact=True).check()
    page.get_by_label("Expires in").fill("2h")
    page.get_by_role("button", name="Create key").click()
    secret = page.get_by_label("The new key")
    expect(secret).to_be_visible()
    key = secret.input_value()
    assert key.startswith("pgk_")
    expect(page.locator("#view [data-secret]")).to_contain_text("will not be shown again")
    page.get_by_role("button", name="Copy key").click()
    expect(page.locator("#message")).to_have_text("The key is on the clipboard.")
    assert page.evaluate("navigator.clipboard.readText()") == key
    key_id = key.split("_")[1]
    row = page.locator(f'#view tr[data-key="{key_id}"]')
    expect(row).to_have_attribute("data-state", "active")
    expect(row).to_contain_text("crm")
    expect(row.get_by_role("list", name="Scopes of ui-ci")).to_have_text(
        "backups:readbackups:create"
    )
    no_serious_violations(page)
    both_widths(page, "keys")

    # The key works over HTTP (curl's requests, made with httpx).
    me = httpx.get(f"{fleet.base}/api/keys/self", headers=bearer(key), timeout=30)
    assert me.status_code == 200, me.text
    assert (me.json()["name"], me.json()["targets"]) == ("ui-ci", ["crm"])
    listed = httpx.get(f"{fleet.base}/api/backup/list?target=crm", headers=bearer(key), timeout=30)
    assert listed.status_code == 200

    # Shown once: the view drawn again has no secret anywhere.
    page.reload()
    view(page, "keys")
    expect(page.locator("#view [data-secret]")).to_have_count(0)
    assert key not in page.content()
    expect(row.locator("[data-label='Last used']")).not_to_have_text("never")

    # Revoked after a confirmation; the next request with it is refused.
    asked: list[str] = []

    def accept(dialog: Dialog) -> None:
        asked.append(dialog.message)
        dialog.accept()

    page.once("dialog", accept)
    row.get_by_role("button", name="Revoke ui-ci").click()
    expect(row).to_have_attribute("data-state", "revoked")
    assert "Revoke the API key ui-ci" in asked[0]
    after = httpx.get(f"{fleet.base}/api/backup/list?target=crm", headers=bearer(key), timeout=30)
    assert after.status_code == 401
    refused = _sign_in_refused(browser, fleet, key)
    expect(refused.locator("#login-error")).to_contain_text("the key was revoked")
    assert problems == []


def test_console_a_key_mints_only_subsets_of_itself(browser: Browser, fleet: Fleet) -> None:
    """A key with keys:manage for shop: the keys view is offered; a key wider than itself is
    refused, and the page shows the API's error and details."""
    manager = mint(
        fleet, name="ui-manager", scopes=["keys:manage", "backups:read"], targets=["shop"]
    )["key"]
    page, problems = signed_in(browser, fleet, token=manager)
    view(page, "overview")
    page.get_by_role("navigation", name="Views").get_by_role("link", name="Keys").click()
    keeper = mint(fleet, name="ui-keeper", scopes=["keys:manage"])["key"]
    only, _ = signed_in(browser, fleet, token=keeper)
    landing = only.locator('#view [data-view="denied"]')  # no backups:read: no overview
    expect(landing).to_contain_text("needs the scope backups:read")
    landing.get_by_role("link", name="API keys").click()
    view(only, "keys")
    nav = only.get_by_role("navigation", name="Views")
    assert nav.get_by_role("link").all_inner_texts() == ["Keys"]
    view(page, "keys")
    page.get_by_label("Key name", exact=True).fill("ui-wider")
    page.get_by_label("Targets (comma-separated; empty: every target)").fill("shop")
    page.get_by_label("backups:delete", exact=True).check()
    page.get_by_role("button", name="Create key").click()
    expect(page.locator("#key-error")).to_have_text(
        "access denied (a key mints only keys with a subset of its scopes)"
    )
    expect(page.locator("#view [data-secret]")).to_have_count(0)
    keys = fleet.get("/api/keys")["keys"]
    assert "ui-wider" not in {k["name"] for k in keys}
    assert [p for p in problems if "403" not in p] == [], problems
