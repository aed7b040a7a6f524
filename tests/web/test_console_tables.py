"""A backup's own actions in the console, in Chromium against the session's real `pgkeep
serve` (tests/web/conftest.py), on `parts` (the sample shop: customer, product, and
purchase with foreign keys to both): a table-level restore of one table from the
dialog, as a job, into a new database holding that table only, its rows proven and its
dropped foreign keys shown; labels added, changed and removed through PATCH, with the
API's refusal shown; and the drift, inconclusive and rehearsal badges."""

from __future__ import annotations

import re
from typing import Any

import psycopg
from playwright.sync_api import Browser, Route, expect

from pgkeep.throwaway.cluster import ThrowawayCluster
from tests.web.conftest import (
    Fleet,
    both_widths,
    create,
    no_serious_violations,
    shot,
    signed_in,
    view,
)

USER_TABLES = (
    "SELECT schemaname || '.' || tablename FROM pg_catalog.pg_tables"
    " WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1"
)


def test_console_restores_one_table_into_a_new_database(
    browser: Browser, fleet: Fleet, cluster: ThrowawayCluster
) -> None:
    name = create(fleet, "parts")
    counted = fleet.get(f"/api/backup/{name}/tables", target="parts")
    rows = {t["name"]: t["rows"] for t in counted["tables"]}
    assert set(rows) == {"public.customer", "public.product", "public.purchase"}
    page, problems = signed_in(browser, fleet, "#/targets/parts")
    view(page, "target")
    page.get_by_role("button", name=f"Restore tables of {name}").click()
    dialog = page.locator("#tables-dialog")
    expect(dialog).to_be_visible()
    expect(dialog.locator("input[name=table]")).to_have_count(3)
    expect(dialog).to_contain_text(f"public.purchase {rows['public.purchase']} rows")
    go = dialog.get_by_role("button", name="Restore tables", exact=True)
    expect(go).to_be_disabled()  # nothing chosen yet
    dialog.get_by_label(re.compile(r"^public\.purchase ")).check()
    dialog.get_by_label("New database to restore into").fill("ui_purchases")
    expect(go).to_be_enabled()
    no_serious_violations(page)
    both_widths(page, "table-restore")
    go.click()

    job = page.locator("#job")
    expect(job).to_have_attribute("data-status", "succeeded", timeout=60_000)
    result = page.locator('#job-result [data-result="restore"]')
    expect(result.locator("tr[data-table]")).to_have_count(1)
    expect(result.locator('tr[data-table="public.purchase"]')).to_contain_text(
        str(rows["public.purchase"])
    )
    dropped = result.locator("li[data-dropped-fk]")
    expect(dropped).to_have_count(2)
    expect(result).to_contain_text("→ public.customer")
    expect(result).to_contain_text("→ public.product")
    expect(page.locator("#message")).to_contain_text("their rows match the manifest")
    shot(page, "table-restore-result-1400")
    with psycopg.connect(cluster.url("ui_purchases")) as conn:
        assert conn.execute(USER_TABLES).fetchall() == [("public.purchase",)]
        assert conn.execute("SELECT count(*) FROM purchase").fetchone() == (
            rows["public.purchase"],
        )
        fks = "SELECT count(*) FROM pg_catalog.pg_constraint WHERE contype = 'f'"
        assert conn.execute(fks).fetchone() == (0,)
    assert problems == []


def _labels(fleet: Fleet, name: str) -> dict[str, str]:
    listed = fleet.get("/api/backup/list", target="parts")["backups"]
    found: dict[str, str] = next(b["labels"] for b in listed if b["filename"] == name)
    return found


def test_console_edits_labels_through_the_api(browser: Browser, fleet: Fleet) -> None:
    name = create(fleet, "parts")
    page, problems = signed_in(browser, fleet, f"#/targets/parts?backup={name}")
    view(page, "target")
    row = page.locator(f'#view tr[data-backup="{name}"]')
    dialog = page.locator("#labels-dialog")

    def edit(**fields: str) -> None:
        row.get_by_role("button", name=f"Edit labels of {name}").click()
        expect(dialog).to_be_visible()
        for label, value in fields.items():
            if value == "remove":
                dialog.get_by_label(f"Remove {label}").check()
            else:
                dialog.get_by_label(label.replace("_", " "), exact=True).fill(value)
        dialog.get_by_role("button", name="Save labels").click()

    row.get_by_role("button", name=f"Edit labels of {name}").click()
    no_serious_violations(page)  # the dialog, open
    dialog.get_by_role("button", name="Cancel").click()
    edit(New_label="reason", Its_value="pre-migration")
    expect(row.get_by_role("list", name="Labels")).to_have_text("reason=pre-migration")
    assert _labels(fleet, name) == {"reason": "pre-migration"}
    edit(reason="deploy-42", New_label="ticket", Its_value="T-1")
    expect(row.get_by_role("list", name="Labels")).to_contain_text("ticket=T-1")
    assert _labels(fleet, name) == {"reason": "deploy-42", "ticket": "T-1"}
    edit(reason="remove")
    expect(row.get_by_role("list", name="Labels")).to_have_text("ticket=T-1")
    assert _labels(fleet, name) == {"ticket": "T-1"}
    # The API refuses a bad key: its words, in the dialog, which stays open.
    edit(New_label="bad key!", Its_value="x")
    expect(dialog.locator("#labels-error")).to_contain_text("label key 'bad key!' is not allowed")
    expect(dialog).to_be_visible()
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_have_count(0)
    assert _labels(fleet, name) == {"ticket": "T-1"}
    assert [p for p in problems if "400 (Bad Request)" not in p] == [], problems


def _planted_verdict(name: str) -> Any:
    """What the verdicts branch's API answers for an inconclusive verify with rehearsals:
    written into this server's list answer in the browser, since this branch's API cannot
    record such a verification yet."""

    def rewrite(route: Route) -> None:
        response = route.fetch()
        body = response.json()
        for backup in body["backups"]:
            if backup["filename"] == name:
                backup["verification"] = {
                    "state": "inconclusive",
                    "at": backup["created"],
                    "rowsProven": None,
                    "check": "environment",
                    "details": "extension postgis 3.4 is missing on the verify server",
                    "source": "primary",
                    "rehearsals": [
                        {"server": "127.0.0.1:5519", "major": 18, "ok": True,
                         "details": "restored: 3 tables, rows match"},
                        {"server": "127.0.0.1:5520", "major": 19, "ok": False,
                         "details": "ERROR: unrecognized configuration parameter"},
                    ],
                }  # fmt: skip
        route.fulfill(response=response, json=body)

    return rewrite


def test_console_shows_drift_and_verdict_badges(
    browser: Browser, fleet: Fleet, cluster: ThrowawayCluster
) -> None:
    before = create(fleet, "parts")
    cluster.execute("DELETE FROM purchase WHERE id > 500", "ui_parts")  # a mass deletion
    drifted = create(fleet, "parts")
    listed = {b["filename"]: b for b in fleet.get("/api/backup/list", target="parts")["backups"]}
    assert listed[drifted]["drift"]["previous"] == before
    assert listed[before]["pinned"] is True
    page, problems = signed_in(browser, fleet)
    view(page, "overview")
    page.route("**/api/backup/list?*", _planted_verdict(before))
    page.goto("/#/targets/parts")
    view(page, "target")
    badge = page.locator(f'#view tr[data-backup="{drifted}"] [data-drift]')
    expect(badge).to_have_attribute("data-drift", before)
    for reason in listed[drifted]["drift"]["reasons"]:
        expect(badge).to_contain_text(reason)
    expect(badge).to_contain_text(f"Much less than {before}")

    row = page.locator(f'#view tr[data-backup="{before}"]')
    expect(row).to_have_attribute("data-verified", "inconclusive")
    expect(row.locator("[data-missing]")).to_contain_text("postgis 3.4 is missing")
    expect(row.locator('[data-rehearsal="18"]')).to_have_attribute("data-ok", "true")
    expect(row.locator('[data-rehearsal="19"]')).to_have_attribute("data-ok", "false")
    expect(row.locator('[data-rehearsal="19"]')).to_contain_text("PostgreSQL 19: fails")
    assert problems == []
