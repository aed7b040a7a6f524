"""What a verify server lacks of what a backup needs, and which server errors are its
(core/environment.py, pure); the verdict they give, and how it is recorded and read back."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from pgkeep.core import environment, verdicts
from pgkeep.core.environment import ENVIRONMENT, Needs, Offers
from pgkeep.core.manifests import from_json, to_json
from pgkeep.core.models import Backup, Check, Rehearsal, Trust, Verification
from tests.core.test_manifests import MANIFEST, NAME, SIGNER, T

OFFERS = Offers("verify:5432", 18, {"plpgsql": ("1.0",), "citext": ("1.6",)}, frozenset({"app"}))


def test_needs_come_from_the_manifest_without_predefined_roles() -> None:
    manifest = replace(
        MANIFEST,
        owners=("app", "pg_database_owner", "alice"),
        grantees=("alice", "bob", "pg_read_all_data"),
        extensions=(("plpgsql", "1.0"), ("pgcrypto", "1.3")),
        server_version="15.20 (Debian 15.20-0+deb12u1)",
    )
    needs = environment.needs_of(Backup(NAME, 1, T, T, manifest=manifest))
    assert needs == Needs((("plpgsql", "1.0"), ("pgcrypto", "1.3")), ("alice", "app", "bob"), 15)
    assert environment.needs_of(Backup(NAME, 1, T, T)) == Needs()


def test_findings_name_what_is_missing_and_how_to_fix_it() -> None:
    needs = Needs((("plpgsql", "1.0"), ("pgcrypto", "1.3")), ("app", "alice"), 19)
    found = environment.findings(needs, OFFERS)
    assert found == [
        "extension pgcrypto is not available on the verify server verify:5432: install "
        "pgcrypto (version 1.3) on the verify server",
        "role alice does not exist on the verify server verify:5432: create role alice there "
        "(CREATE ROLE alice NOLOGIN, or restore the globals backup)",
        "the verify server verify:5432 runs PostgreSQL 18, older than the source's 19: verify "
        "on PostgreSQL 19 or newer",
    ]
    assert environment.findings(Needs((("citext", "1.4"),), ("app",), 15), OFFERS) == []
    assert environment.version_notes(Needs((("citext", "1.4"),)), OFFERS) == [
        "citext 1.4 is not installable on verify:5432 (it has 1.6)"
    ]


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ('psql:<stdin>:9: ERROR:  42704: role "bob" does not exist\nLOCATION:  x', 'role "bob"'),
        ("ERROR:  58P01: could not open extension control file", "58P01"),
        ("ERROR:  0A000: extension is not supported", "0A000"),
        ('ERROR:  23505: duplicate key value violates unique constraint "t_pkey"', None),
        ("ERROR:  P0001: not restorable here", None),
        ('ERROR:  role "bob" does not exist', None),  # no SQLSTATE: not classified
        ("", None),
    ],
)
def test_only_environment_sqlstates_are_the_servers_fault(text: str, found: str | None) -> None:
    said = environment.environmental(text)
    assert (said is None) is (found is None)
    assert found is None or found in (said or "")


def test_verdict_failed_beats_inconclusive_beats_verified() -> None:
    ok, env, bad = Check("sha256", True), Check(ENVIRONMENT, False, "x"), Check("restore", False)
    assert environment.verified([ok]) is True
    assert environment.verified([ok, env]) is None
    assert environment.verified([ok, env, bad]) is False


def test_an_inconclusive_verification_round_trips_signed_and_old_ones_still_read() -> None:
    checks = (Check("sha256", True, "ok"), Check(ENVIRONMENT, False, "install pgcrypto"))
    rehearsals = (Rehearsal("next:5432", 19, False, "psql failed: ERROR:  42704: …"),)
    v = Verification(None, T, checks, rehearsals=rehearsals)
    manifest = replace(MANIFEST, verification=v)
    raw = to_json(manifest, SIGNER)
    recorded = json.loads(raw)["verification"]
    assert recorded["verified"] is None
    assert recorded["rehearsals"] == [
        {"server": "next:5432", "major": 19, "ok": False, "details": v.rehearsals[0].details}
    ]
    read = from_json(raw, NAME, SIGNER)
    assert (read.manifest, read.trust) == (manifest, Trust.SIGNED)
    verdict = verdicts.verdict(Backup(NAME, 1, T, T, manifest=read.manifest, trust=read.trust))
    assert (verdict.state, verdict.check, verdict.details) == (
        "inconclusive",
        ENVIRONMENT,
        "install pgcrypto",
    )
    assert verdict.rehearsals == rehearsals
    old = replace(MANIFEST, verification=Verification(True, T, (Check("sha256", True, "ok"),)))
    document = json.loads(to_json(old, SIGNER))
    assert "rehearsals" not in document["verification"]  # as written before rehearsals
    assert from_json(to_json(old, SIGNER), NAME, SIGNER).manifest == old
