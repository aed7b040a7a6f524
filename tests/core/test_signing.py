"""Signing keys: HKDF, key ids, checks, rotation and derived keys."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from pgkeep.core.signing import Signer, Verdict, canonical, hkdf, key_id


def test_hkdf_matches_rfc_5869_test_case_3() -> None:
    okm = hkdf(b"\x0b" * 22, b"", 42)
    assert okm.hex() == (
        "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8"
    )
    assert hkdf(b"\x0b" * 22, b"other", 32) != okm[:32]


def test_signer_checks_its_own_signature_and_nothing_else() -> None:
    signer = Signer(b"a" * 32)
    document = {"x": 1, "y": "z"}
    signature = signer.sign(document)
    assert signature["keyId"] == key_id(b"a" * 32) != key_id(b"b" * 32)
    assert signer.check(document, signature) is Verdict.GOOD
    assert signer.check({"x": 2, "y": "z"}, signature) is Verdict.BAD
    assert signer.check(document, {**signature, "hmac": "0" * 64}) is Verdict.BAD
    assert signer.check(document, {"keyId": signature["keyId"]}) is Verdict.BAD
    assert signer.check(document, None) is Verdict.UNSIGNED
    assert signer.check(document, "text") is Verdict.BAD
    assert Signer(b"b" * 32).check(document, signature) is Verdict.UNKNOWN_KEY


def test_signer_refuses_short_keys() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        Signer(b"a" * 31)


def test_derived_signers_differ_from_their_parent_and_keep_rotation() -> None:
    old = Signer(b"o" * 32)
    current = Signer(b"n" * 32, old=[b"o" * 32])
    document = {"seq": 1}
    audit_old = old.derive("audit")
    audit = current.derive("audit")
    assert audit.key_id not in (current.key_id, old.key_id)
    assert current.check(document, audit.sign(document)) is Verdict.UNKNOWN_KEY
    assert audit.check(document, audit_old.sign(document)) is Verdict.GOOD
    assert current.derive("other").check(document, audit.sign(document)) is Verdict.UNKNOWN_KEY


def test_hkdf_agrees_with_cryptography_at_every_length() -> None:
    for length in (1, 31, 32, 33, 64, 65, 96, 100):
        reference = HKDF(hashes.SHA256(), length, None, b"info").derive(b"secret")
        assert hkdf(b"secret", b"info", length) == reference


def test_key_ids_and_canonical_form_never_change() -> None:
    """Manifests in the wild are checked with these: a change would orphan every backup."""
    assert key_id(b"a" * 32) == "b61a7a93ea36c987"
    assert canonical({"b": [1, "é"], "a": None}) == b'{"a":null,"b":[1,"\\u00e9"]}'
    derived = Signer(b"a" * 32).derive("audit")
    assert derived.key_id == "f97633427c875845"
    assert Signer(b"a" * 32).sign({"x": 1})["hmac"] == (
        "8e487cce2e9b0cf62daa2d43db62a73b747a984539728968697c10ca39e260b1"
    )


def test_secrets_for_other_purposes_are_fixed_per_key_and_purpose() -> None:
    """Instances sharing a signing key derive the same ticket key; it must never change."""
    signer = Signer(b"a" * 32, old=[b"o" * 32])
    assert signer.secret("tickets").hex() == (
        "84499a5533ca2c1c74af34a1cfa12d3f0e00e636cbc4e499cbf4d1b920f9f5bb"
    )
    assert signer.secret("tickets") == Signer(b"a" * 32).secret("tickets")
    assert signer.secret("other") != signer.secret("tickets")
    assert Signer(b"b" * 32).secret("tickets") != signer.secret("tickets")


def test_hkdf_gives_a_32_byte_key_by_default() -> None:
    assert hkdf(b"secret", b"info") == HKDF(hashes.SHA256(), 32, None, b"info").derive(b"secret")
