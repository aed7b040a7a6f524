"""The audit chain: entries in a keyed hash chain, its head anchored elsewhere, and how a
trail is checked (`pgkeep audit verify`). Pure: the file store is storage/audit.py, the
table store (several instances) postgres/control/audit_trail.py.

Each entry carries `seq`, the `prev` entry's hash and its own `hash`, an
HMAC-SHA256 (key derived from the signing key, named by `keyId`), so a trail
rewritten from scratch with recomputed hashes fails to verify without the key.
The newest (seq, hash) is also kept by an `Anchor` outside the trail, so cutting
entries off the end, or deleting the trail, is detected.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Protocol

from pgkeep.core.events import Event
from pgkeep.core.signing import Signer, Verdict

GENESIS = "0" * 64
TORN = "audit-torn-line"


class Anchor(Protocol):
    """Where the chain's head is kept, away from the file."""

    def load(self) -> tuple[int, str] | None: ...

    def save(self, seq: int, digest: str) -> None: ...


class Trail(Protocol):
    """An audit trail: a file (`AuditLog`) or rows of the control database shared by
    instances (`postgres.control.audit_trail.PgAuditTrail`); both hold the same keyed chain."""

    signer: Signer
    anchor: Anchor | None

    @property
    def where(self) -> str: ...

    def on_event(self, event: Event) -> None: ...

    def append(self, **fields: Any) -> None: ...

    def read(self) -> list[dict[str, Any]]: ...

    def page(self, offset: int, limit: int) -> tuple[list[dict[str, Any]], int]:
        """Entries newest first, `limit` of them after skipping `offset`, and how many
        there are in all; never the whole trail in memory."""
        ...


def event_fields(event: Event) -> dict[str, Any]:
    """A core event as an audit entry's fields."""
    return {
        "at": event.at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "who": event.actor.who,
        "via": event.actor.via,
        "source": event.actor.source,
        "action": event.action,
        "target": event.target,
        "backup": event.filename,
        "result": event.outcome,
        "error": event.error[:500],
        "request_id": event.actor.request_id,
        **({"store": event.store} if event.store else {}),
        **(
            {"apiKeyId": event.actor.key_id, "owner": event.actor.owner}
            if event.actor.key_id
            else {}
        ),
    }


def parsed(raw: str | bytes, where: int) -> dict[str, Any]:
    """An entry as stored; one that is not an entry as `{"_unreadable": where}` (its line
    number, or its row's seq)."""
    try:
        entry = json.loads(raw)
    except ValueError:
        return {"_unreadable": where}
    return entry if isinstance(entry, dict) else {"_unreadable": where}


def chained(signer: Signer, seq: int, prev: str, fields: dict[str, Any]) -> dict[str, Any]:
    """The entry after (seq, prev): numbered, linked and keyed."""
    entry: dict[str, Any] = {"seq": seq + 1, **fields, "prev": prev}
    signature = signer.sign(entry)  # over everything but keyId and hash, added now
    entry["keyId"], entry["hash"] = signature["keyId"], signature["hmac"]
    return entry


@dataclass(frozen=True)
class Report:
    intact: bool
    entries: int
    problem: str = ""
    notes: tuple[str, ...] = ()


def verify(
    log: Trail, signer: Signer, anchor: Anchor | None, entries: list[dict[str, Any]] | None = None
) -> Report:
    """Recompute the keyed chain (`entries`, when already read from `log`), and compare its
    head with the anchor."""
    entries = log.read() if entries is None else entries
    notes: list[str] = []
    previous_seq, previous = 0, GENESIS
    for index, entry in enumerate(entries):
        if "_unreadable" in entry:
            fenced = index + 1 < len(entries) and entries[index + 1].get("action") == TORN
            if not fenced:
                return Report(False, len(entries), f"line {entry['_unreadable']}: not an entry")
            notes.append(f"line {entry['_unreadable']}: torn by a crash, fenced")
            continue
        problem = _check(entry, signer, previous_seq, previous)
        if problem and previous_seq == 0 and isinstance(entry.get("seq"), int) and entry["seq"] > 1:
            problem = f"entries 1 to {entry['seq'] - 1} are missing: the log was deleted or emptied"
        if problem:
            return Report(False, len(entries), f"seq {entry.get('seq')}: {problem}", tuple(notes))
        previous_seq, previous = int(entry["seq"]), str(entry["hash"])
    head = anchor.load() if anchor is not None else None
    if head is not None and head[0] > previous_seq:
        return Report(
            False,
            len(entries),
            f"the anchor records {head[0]} entries but the log ends at {previous_seq}: "
            "lines were cut off the end",
            tuple(notes),
        )
    if head is not None:
        match = next((e for e in entries if e.get("seq") == head[0]), None)
        if match is None or match.get("hash") != head[1]:
            return Report(
                False, len(entries), f"seq {head[0]} differs from the anchor", tuple(notes)
            )
    return Report(True, len(entries), "", tuple(notes))


def _check(entry: dict[str, Any], signer: Signer, previous_seq: int, previous: object) -> str:
    if entry.get("seq") != previous_seq + 1 or entry.get("prev") != previous:
        return "chain broken (an entry removed, added or reordered)"
    body = {k: v for k, v in entry.items() if k not in ("hash", "keyId")}
    verdict = signer.check(body, {"keyId": entry.get("keyId"), "hmac": entry.get("hash")})
    if verdict is Verdict.UNKNOWN_KEY:
        return "signed with a key this service does not have"
    if verdict is not Verdict.GOOD:
        return "content does not match its hash (edited, or forged without the key)"
    return ""


@dataclass(frozen=True)
class Filter:
    """Which entries a reader asks for: by action, target and who acted (each exact), and
    only those older than seq `before`."""

    action: str | None = None
    target: str | None = None
    who: str | None = None
    before: int | None = None

    @property
    def empty(self) -> bool:
        return self == Filter()

    def keeps(self, entry: dict[str, Any]) -> bool:
        if self.before is not None and not (
            isinstance(entry.get("seq"), int) and entry["seq"] < self.before
        ):
            return False
        wanted = (("action", self.action), ("target", self.target), ("who", self.who))
        return all(value is None or entry.get(key) == value for key, value in wanted)
