"""Download tickets, unit by unit: signed, bound to one file, single use, short-lived."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest

from pgkeep.errors import AuthError
from pgkeep.tickets import TicketIssuer

NAME = "backup-2024-12-09T10-30-45.sql"
OTHER = "backup-2024-12-09T10-30-46.sql"


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _parts(ticket: str) -> tuple[dict[str, object], str, str]:
    body, _, signature = ticket.partition(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    return claims, body, signature


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_a_ticket_works_once_for_its_file_and_says_for_whom() -> None:
    issuer = TicketIssuer()
    ticket, expires = issuer.issue("t1", NAME, "alice")
    assert issuer.redeem(ticket, "t1", NAME) == "alice"
    with pytest.raises(AuthError, match="used download ticket"):
        issuer.redeem(ticket, "t1", NAME)
    claims, _, _ = _parts(ticket)
    assert claims["f"] == NAME
    assert claims["s"] == "alice"
    assert claims["e"] == expires


def test_a_ticket_for_another_file_is_refused_and_stays_unused() -> None:
    issuer = TicketIssuer()
    ticket, _ = issuer.issue("t1", NAME, "alice")
    with pytest.raises(AuthError) as caught:
        issuer.redeem(ticket, "t1", OTHER)
    assert caught.value.details == "the ticket is for another backup"
    assert issuer.redeem(ticket, "t1", NAME) == "alice"


def test_a_ticket_expires_after_its_ttl_not_before() -> None:
    clock = Clock()
    issuer = TicketIssuer(clock=clock, ttl=60)
    first, expires = issuer.issue("t1", NAME, "a")
    second, _ = issuer.issue("t1", NAME, "b")
    assert expires == clock.now + 60
    clock.now += 60  # the last valid moment
    assert issuer.redeem(first, "t1", NAME) == "a"
    clock.now += 0.001
    with pytest.raises(AuthError, match="expired download ticket"):
        issuer.redeem(second, "t1", NAME)


def test_a_ticket_lives_sixty_seconds_unless_told_otherwise() -> None:
    clock = Clock()
    issuer = TicketIssuer(clock=clock)
    ticket, expires = issuer.issue("t1", NAME, "a")
    assert expires == clock.now + 60
    clock.now += 60.001
    with pytest.raises(AuthError, match="expired download ticket"):
        issuer.redeem(ticket, "t1", NAME)


def test_the_signature_covers_the_body() -> None:
    issuer = TicketIssuer()
    ticket, _ = issuer.issue("t1", NAME, "alice")
    claims, body, signature = _parts(ticket)
    forged_body = _b64(json.dumps({**claims, "f": OTHER}).encode())
    for forged in (
        f"{forged_body}.{signature}",  # the body changed, the signature kept
        f"{body}.{_b64(b'x' * 32)}",  # a made-up signature
        f"{body}.",  # none at all
        body,
        f"{_b64(b'')}.{signature}",  # an empty body
    ):
        with pytest.raises(AuthError, match="invalid download ticket"):
            issuer.redeem(forged, "t1", OTHER if forged.startswith(forged_body) else NAME)
    assert issuer.redeem(ticket, "t1", NAME) == "alice"  # the real one is still good


def test_another_issuers_ticket_is_refused() -> None:
    """Each process signs with its own random key: a fixed key would accept this."""
    ticket, _ = TicketIssuer().issue("t1", NAME, "alice")
    with pytest.raises(AuthError, match="invalid download ticket"):
        TicketIssuer().redeem(ticket, "t1", NAME)


@pytest.mark.parametrize("garbage", ["", ".", "%%%.%%%", "a.b.c", "eyJ9.AAAA", "!!!!.!!!!"])
def test_garbage_tickets_are_refused(garbage: str) -> None:
    with pytest.raises(AuthError, match="invalid download ticket"):
        TicketIssuer().redeem(garbage, "t1", NAME)


def test_used_tickets_are_forgotten_only_after_they_expire() -> None:
    clock = Clock()
    issuer = TicketIssuer(clock=clock, ttl=60)
    old, _ = issuer.issue("t1", NAME, "a")
    issuer.redeem(old, "t1", NAME)
    clock.now += 30
    fresh, _ = issuer.issue("t1", NAME, "b")
    issuer.redeem(fresh, "t1", NAME)
    with pytest.raises(AuthError, match="used"):
        issuer.redeem(old, "t1", NAME)  # still remembered: not expired yet
    clock.now += 31  # old is past its expiry, fresh is not
    with pytest.raises(AuthError, match="expired"):
        issuer.redeem(old, "t1", NAME)
    with pytest.raises(AuthError, match="used"):
        issuer.redeem(fresh, "t1", NAME)


def test_tickets_are_unique() -> None:
    issuer = TicketIssuer()
    assert issuer.issue("t1", NAME, "a")[0] != issuer.issue("t1", NAME, "a")[0]


def _crafted(issuer: TicketIssuer, claims: dict[str, object]) -> str:
    """A ticket this issuer really signed, with claims a real issue never has."""
    body = _b64(json.dumps(claims).encode())
    return f"{body}.{_b64(issuer._sign(body))}"


def test_refusals_say_what_to_do() -> None:
    clock = Clock()
    issuer = TicketIssuer(clock=clock, ttl=60)
    ticket, _ = issuer.issue("t1", NAME, "alice")
    cases = [
        ("nonsense", NAME, ("invalid download ticket", "ask for a new download link")),
        (ticket, OTHER, ("invalid download ticket", "the ticket is for another backup")),
    ]
    for text, name, expected in cases:
        with pytest.raises(AuthError) as caught:
            issuer.redeem(text, "t1", name)
        assert (caught.value.message, caught.value.details) == expected
    issuer.redeem(ticket, "t1", NAME)
    with pytest.raises(AuthError) as used:
        issuer.redeem(ticket, "t1", NAME)
    assert (used.value.message, used.value.details) == (
        "used download ticket",
        "a ticket works once; ask for a new link",
    )
    clock.now += 61
    late, _ = issuer.issue("t1", NAME, "bob")
    clock.now += 61
    with pytest.raises(AuthError) as expired:
        issuer.redeem(late, "t1", NAME)
    assert (expired.value.message, expired.value.details) == (
        "expired download ticket",
        "ask for a new download link",
    )


def test_a_used_ticket_is_remembered_through_its_last_valid_moment() -> None:
    clock = Clock()
    issuer = TicketIssuer(clock=clock, ttl=60)
    ticket, expires = issuer.issue("t1", NAME, "a")
    issuer.redeem(ticket, "t1", NAME)
    clock.now = expires  # still valid: must still count as used
    with pytest.raises(AuthError, match="used download ticket"):
        issuer.redeem(ticket, "t1", NAME)


def test_signed_claims_missing_their_fields_are_handled() -> None:
    clock = Clock()
    issuer = TicketIssuer(clock=clock)
    no_expiry = _crafted(issuer, {"t": "t1", "f": NAME, "s": "a", "n": "1"})
    with pytest.raises(AuthError, match="expired download ticket"):
        issuer.redeem(no_expiry, "t1", NAME)
    no_subject = _crafted(issuer, {"t": "t1", "f": NAME, "e": clock.now + 10, "n": "2"})
    assert issuer.redeem(no_subject, "t1", NAME) == ""


def test_tickets_are_url_safe_and_carry_a_fresh_nonce() -> None:
    issuer = TicketIssuer()
    for sub in ("a", "ab", "abc", "abcd", "x" * 37):
        ticket, _ = issuer.issue("t1", NAME, sub)
        assert "=" not in ticket
        assert set(ticket) <= set(
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."
        )
        claims, _, _ = _parts(ticket)
        assert len(str(claims["n"])) == 24
        assert issuer.redeem(ticket, "t1", NAME) == sub


def test_a_ticket_is_bound_to_its_target_too() -> None:
    """Two targets may hold backups of the same name."""
    issuer = TicketIssuer()
    ticket, _ = issuer.issue("shop", NAME, "alice")
    with pytest.raises(AuthError) as caught:
        issuer.redeem(ticket, "crm", NAME)
    assert caught.value.details == "the ticket is for another backup"
    assert issuer.redeem(ticket, "shop", NAME) == "alice"


class Ledger:
    """What the control database keeps for instances sharing it: each nonce redeemed once."""

    def __init__(self) -> None:
        self.redeemed: dict[str, datetime] = {}

    def __call__(self, nonce: str, expires: datetime) -> bool:
        if nonce in self.redeemed:
            return False
        self.redeemed[nonce] = expires
        return True


def test_instances_sharing_a_key_and_ledger_redeem_a_ticket_once_between_them() -> None:
    key, ledger, clock = b"k" * 32, Ledger(), Clock()
    first = TicketIssuer(clock=clock, key=key, redeem_once=ledger)
    second = TicketIssuer(clock=clock, key=key, redeem_once=ledger)
    ticket, expires = first.issue("t1", NAME, "alice")
    assert second.redeem(ticket, "t1", NAME) == "alice"  # issued by one, redeemed on another
    claims, _, _ = _parts(ticket)
    assert ledger.redeemed == {claims["n"]: datetime.fromtimestamp(expires, UTC)}
    with pytest.raises(AuthError) as caught:
        first.redeem(ticket, "t1", NAME)  # the issuer itself never saw it redeemed
    assert (caught.value.message, caught.value.details) == (
        "used download ticket",
        "a ticket works once; ask for a new link",
    )
