"""The audit log's keyed chain: edits, removals, forgeries, truncation, deletion, torn lines."""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pgkeep.core.audit import TORN, verify
from pgkeep.core.events import Actor, Event
from pgkeep.core.signing import Signer, canonical
from pgkeep.errors import StorageError
from pgkeep.storage.audit import AuditLog

SIGNER = Signer(b"audit-test-key-" + b"0123456789abcdefgh")


class MemoryAnchor:
    """A real Anchor kept in memory (the service keeps it in the control database)."""

    def __init__(self) -> None:
        self.head: tuple[int, str] | None = None

    def load(self) -> tuple[int, str] | None:
        return self.head

    def save(self, seq: int, digest: str) -> None:
        if self.head is None or self.head[0] < seq:
            self.head = (seq, digest)


def _log(tmp_path: Path, n: int = 5, anchor: MemoryAnchor | None = None) -> AuditLog:
    log = AuditLog(tmp_path / "audit.jsonl", SIGNER, anchor)
    for i in range(n):
        log.append(who="alice", action="create", backup=f"b{i}", result="succeeded")
    return log


def _lines(log: AuditLog) -> list[str]:
    return log.path.read_text().splitlines()


def _write(log: AuditLog, lines: list[str]) -> None:
    log.path.write_text("\n".join(lines) + "\n")


def test_audit_chain_survives_reopening(tmp_path: Path) -> None:
    anchor = MemoryAnchor()
    log = _log(tmp_path, 3, anchor)
    AuditLog(log.path, SIGNER, anchor).append(who="bob", action="delete", result="succeeded")
    report = verify(log, SIGNER, anchor)
    assert (report.intact, report.entries, report.problem) == (True, 4, "")
    assert anchor.head is not None
    assert anchor.head[0] == 4
    assert log.path.stat().st_mode & 0o777 == 0o600


def test_audit_chain_detects_an_edited_line(tmp_path: Path) -> None:
    log = _log(tmp_path)
    lines = _lines(log)
    entry = json.loads(lines[2])
    entry["who"] = "mallory"
    lines[2] = json.dumps(entry, sort_keys=True)
    _write(log, lines)
    report = verify(log, SIGNER, None)
    assert not report.intact
    assert (
        report.problem
        == "seq 3: content does not match its hash (edited, or forged without the key)"
    )


def test_audit_chain_detects_a_removed_line(tmp_path: Path) -> None:
    log = _log(tmp_path)
    lines = _lines(log)
    del lines[1]
    _write(log, lines)
    report = verify(log, SIGNER, None)
    assert (report.intact, report.entries) == (False, 4)
    assert report.problem == "seq 3: chain broken (an entry removed, added or reordered)"


def test_audit_chain_detects_a_log_rewritten_without_the_key(tmp_path: Path) -> None:
    """A whole log rewritten with recomputed plain SHA-256 hashes (the old scheme) fails."""
    log = _log(tmp_path)
    previous = "0" * 64
    forged = []
    for line in _lines(log):
        entry = json.loads(line)
        entry["who"] = "mallory"
        entry["prev"] = previous
        body = {k: v for k, v in entry.items() if k not in ("hash", "keyId")}
        entry["hash"] = previous = hashlib.sha256(canonical(body)).hexdigest()
        forged.append(json.dumps(entry, sort_keys=True))
    _write(log, forged)
    report = verify(log, SIGNER, None)
    assert not report.intact
    assert report.problem.startswith("seq 1: content does not match its hash")
    other_key = Signer(b"x" * 32).derive("audit")
    assert verify(log, other_key, None).problem.startswith("seq 1: signed with a key")


def test_audit_chain_detects_lines_cut_off_the_end(tmp_path: Path) -> None:
    anchor = MemoryAnchor()
    log = _log(tmp_path, 5, anchor)
    _write(log, _lines(log)[:3])
    report = verify(log, SIGNER, anchor)
    assert not report.intact
    assert "the anchor records 5 entries but the log ends at 3" in report.problem
    assert verify(log, SIGNER, None).intact  # without the anchor, a shorter chain looks whole


def test_audit_log_deleted_is_detected_and_the_chain_goes_on(tmp_path: Path) -> None:
    anchor = MemoryAnchor()
    log = _log(tmp_path, 4, anchor)
    log.path.unlink()
    restarted = AuditLog(log.path, SIGNER, anchor)  # as after a restart
    restarted.append(who="alice", action="delete", result="succeeded")
    assert json.loads(_lines(restarted)[0])["seq"] == 5
    report = verify(restarted, SIGNER, anchor)
    assert not report.intact
    assert report.problem == "seq 5: entries 1 to 4 are missing: the log was deleted or emptied"


def test_audit_log_emptied_without_anchor_reads_as_empty(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "none.jsonl", SIGNER)
    assert verify(log, SIGNER, None).entries == 0


def test_audit_torn_last_line_is_fenced_not_fatal(tmp_path: Path) -> None:
    anchor = MemoryAnchor()
    log = _log(tmp_path, 2, anchor)
    with log.path.open("a") as handle:
        handle.write('{"seq": 3, "who": "ali')  # the process died mid-write
    log.append(who="alice", action="pin", result="succeeded")
    entries = log.read()
    assert [e.get("action") for e in entries[-2:]] == [TORN, "pin"]
    assert "_unreadable" in entries[2]
    report = verify(log, SIGNER, anchor)
    assert report.intact, report.problem
    assert report.notes == ("line 3: torn by a crash, fenced",)


def test_audit_unfenced_garbage_is_broken(tmp_path: Path) -> None:
    log = _log(tmp_path, 2)
    lines = _lines(log)
    _write(log, [lines[0], "garbage", lines[1]])
    assert verify(log, SIGNER, None).problem == "line 2: not an entry"


def test_audit_log_symlink_is_never_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("precious\n")
    link = tmp_path / "audit.jsonl"
    link.symlink_to(outside)
    with pytest.raises(StorageError, match="symbolic links"):
        AuditLog(link, SIGNER).append(who="x", action="create", result="succeeded")
    assert outside.read_text() == "precious\n"
    with pytest.raises(StorageError):
        AuditLog(link, SIGNER).read()


def test_audit_appends_from_two_processes_share_one_chain(tmp_path: Path) -> None:
    """The CLI and the server append to one file; the lock and the re-read keep one chain."""
    log_a = AuditLog(tmp_path / "audit.jsonl", SIGNER)
    log_b = AuditLog(tmp_path / "audit.jsonl", SIGNER)
    for i in range(6):
        (log_a if i % 2 else log_b).append(who=str(i), action="create", result="succeeded")
    report = verify(log_a, SIGNER, None)
    assert (report.intact, report.entries) == (True, 6)


def test_events_are_written_with_every_field(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.jsonl", SIGNER)
    at = datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    actor = Actor("alice", "api", "10.0.0.1", "rid-1")
    log.on_event(Event("delete", "refused", "shop", at, actor, "b.sql", None, "x" * 600))
    [entry] = log.read()
    assert {k: v for k, v in entry.items() if k not in ("hash", "keyId")} == {
        "seq": 1,
        "at": "2025-01-02T03:04:05.678Z",
        "who": "alice",
        "via": "api",
        "source": "10.0.0.1",
        "action": "delete",
        "target": "shop",
        "backup": "b.sql",
        "result": "refused",
        "error": "x" * 500,
        "request_id": "rid-1",
        "prev": "0" * 64,
    }
    assert entry["keyId"] == SIGNER.key_id


def test_a_forged_link_is_caught_even_when_the_seq_is_right(tmp_path: Path) -> None:
    log = _log(tmp_path, 3)
    lines = _lines(log)
    entry = json.loads(lines[1])
    entry["prev"] = "f" * 64
    lines[1] = json.dumps(entry, sort_keys=True)
    _write(log, lines)
    assert verify(log, SIGNER, None).problem == (
        "seq 2: chain broken (an entry removed, added or reordered)"
    )


def test_a_single_missing_first_entry_is_reported(tmp_path: Path) -> None:
    log = _log(tmp_path, 3)
    _write(log, _lines(log)[1:])
    report = verify(log, SIGNER, None)
    assert not report.intact
    assert report.entries == 2
    assert report.problem == "seq 2: entries 1 to 1 are missing: the log was deleted or emptied"


def test_after_a_fenced_tear_the_rest_is_still_checked(tmp_path: Path) -> None:
    log = _log(tmp_path, 2)
    with log.path.open("a") as handle:
        handle.write('{"torn')
    log.append(who="alice", action="pin", result="succeeded")
    log.append(who="alice", action="unpin", result="succeeded")
    lines = _lines(log)
    edited = json.loads(lines[-1])
    edited["who"] = "mallory"
    lines[-1] = json.dumps(edited, sort_keys=True)
    _write(log, lines)
    report = verify(log, SIGNER, None)
    assert not report.intact
    assert report.problem.startswith("seq 5: content does not match")
    assert report.notes == ("line 3: torn by a crash, fenced",)


def test_an_unreadable_last_line_is_not_an_entry(tmp_path: Path) -> None:
    log = _log(tmp_path, 2)
    with log.path.open("a") as handle:
        handle.write("not json\n")
    report = verify(log, SIGNER, None)
    assert (report.intact, report.entries, report.problem) == (False, 3, "line 3: not an entry")


def test_the_anchor_must_match_the_entry_it_names(tmp_path: Path) -> None:
    anchor = MemoryAnchor()
    log = _log(tmp_path, 3, anchor)
    assert anchor.head is not None
    anchor.head = (2, anchor.head[1])  # seq 2 with seq 3's hash
    report = verify(log, SIGNER, anchor)
    assert (report.intact, report.problem) == (False, "seq 2 differs from the anchor")
    assert report.notes == ()


class _DownAnchor:
    def load(self) -> tuple[int, str] | None:
        raise StorageError("control database unavailable")

    def save(self, seq: int, digest: str) -> None:
        raise StorageError("control database unavailable")


def test_an_unavailable_anchor_never_stops_appending(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    log = AuditLog(tmp_path / "audit.jsonl", SIGNER, _DownAnchor())
    log.append(who="a", action="create", result="succeeded")
    log.append(who="a", action="delete", result="succeeded")
    assert verify(log, SIGNER, None).intact
    messages = [r.getMessage() for r in caplog.records]
    assert "audit anchor not updated: control database unavailable" in messages
    assert "audit anchor unavailable: control database unavailable" in messages


def test_a_hard_linked_or_dangling_audit_log_is_refused(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere.jsonl"
    elsewhere.write_text("")
    linked = tmp_path / "linked.jsonl"
    linked.hardlink_to(elsewhere)
    with pytest.raises(StorageError, match="not a plain regular file"):
        AuditLog(linked, SIGNER).append(who="x", action="create", result="succeeded")
    dangling = tmp_path / "dangling.jsonl"
    dangling.symlink_to(tmp_path / "nowhere")
    with pytest.raises(StorageError):
        AuditLog(dangling, SIGNER).read()
    assert not (tmp_path / "nowhere").exists()
    assert AuditLog(tmp_path / "missing.jsonl", SIGNER).read() == []


def test_non_object_lines_are_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    path.write_text('[1, 2]\n"text"\n{"seq": 1}\n')
    entries = AuditLog(path, SIGNER).read()
    assert entries[:2] == [{"_unreadable": 1}, {"_unreadable": 2}]
    assert entries[2] == {"seq": 1}


def test_an_empty_line_cannot_end_verification_early(tmp_path: Path) -> None:
    log = _log(tmp_path, 4)
    lines = _lines(log)
    edited = json.loads(lines[3])
    edited["who"] = "mallory"
    _write(log, [lines[0], lines[1], "", lines[2], json.dumps(edited, sort_keys=True)])
    report = verify(log, SIGNER, None)
    assert not report.intact
    assert report.problem.startswith("seq 4: content does not match")


def test_a_fence_written_just_before_a_crash_is_enough(tmp_path: Path) -> None:
    anchor = MemoryAnchor()
    log = _log(tmp_path, 2, anchor)
    with log.path.open("a") as handle:
        handle.write('{"seq": 3')
    log.append(who="a", action="pin", result="succeeded")
    lines = _lines(log)
    fence = json.loads(lines[3])
    assert (fence["action"], fence["details"]) == (TORN, "a line after seq 2 was torn")
    _write(log, lines[:4])  # the entry after the fence was never written
    report = verify(log, SIGNER, None)
    assert (report.intact, report.notes) == (True, ("line 3: torn by a crash, fenced",))
    cut = verify(log, SIGNER, anchor)  # but the anchor knows seq 4 was written
    assert (cut.intact, cut.notes) == (False, ("line 3: torn by a crash, fenced",))
    assert "the anchor records 4 entries but the log ends at 3" in cut.problem


def test_lines_are_ascii_with_sorted_keys(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.jsonl", SIGNER)
    log.append(who="zoë", action="create", result="succeeded")
    line = log.path.read_bytes().splitlines()[0]
    assert line.isascii()
    assert b"zo\\u00eb" in line
    keys = list(json.loads(line))
    assert keys == sorted(keys)


def test_open_errors_name_the_log(tmp_path: Path) -> None:
    link = tmp_path / "audit.jsonl"
    link.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(StorageError) as caught:
        AuditLog(link, SIGNER).append(who="x", action="create", result="succeeded")
    assert str(link) in caught.value.message
    assert caught.value.details == "it must be a regular file, not a symlink"
    linked = tmp_path / "linked.jsonl"
    (tmp_path / "real.jsonl").write_text("")
    linked.hardlink_to(tmp_path / "real.jsonl")
    with pytest.raises(StorageError) as hard:
        AuditLog(linked, SIGNER).read()
    assert str(linked) in hard.value.message


def test_pages_are_newest_first_slices_of_what_read_gives(tmp_path: Path) -> None:
    log = _log(tmp_path, 12)
    lines = _lines(log)
    _write(log, [*lines[:4], "not json", "", *lines[4:]])  # one unreadable, one blank line
    everything = list(reversed(log.read()))
    assert len(everything) == 13
    for offset, limit in ((0, 1), (0, 5), (3, 4), (10, 10), (13, 5), (50, 1), (2**70, 1000)):
        entries, total = log.page(offset, limit)
        assert total == 13
        assert entries == everything[offset : offset + limit], (offset, limit)
    assert {"_unreadable": 5} in log.page(0, 100)[0]
    assert AuditLog(tmp_path / "none.jsonl", SIGNER).page(0, 10) == ([], 0)


def test_an_event_of_a_copy_store_names_the_store(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.jsonl", SIGNER)
    at = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    event = Event("copy", "succeeded", "shop", at, Actor("pgkeep", "system"), "b.sql", None, "")
    log.on_event(event)
    log.on_event(replace(event, store="offsite"))
    first, second = log.read()
    assert "store" not in first
    assert second["store"] == "offsite"


def test_an_append_the_disk_cannot_take_leaves_the_file_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk: write() is short, then writes nothing. The half entry is cut off again
    and the action it records is refused."""
    log = _log(tmp_path, 2)
    before = log.path.read_bytes()
    real_write = os.write
    calls = []

    def full(fd: int, data: bytes | memoryview) -> int:
        calls.append(len(data))
        return real_write(fd, data[:20]) if len(calls) == 1 else 0

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(StorageError) as caught:
        log.append(who="alice", action="delete", result="succeeded")
    monkeypatch.undo()
    assert caught.value.message == "cannot write the audit trail: No space left on device"
    assert caught.value.details == f"appending to {str(log.path)!r}"
    assert isinstance(caught.value.__cause__, OSError)
    assert caught.value.__cause__.errno == errno.ENOSPC
    assert log.path.read_bytes() == before
    log.append(who="alice", action="delete", result="succeeded")
    assert verify(log, SIGNER, None).entries == 3


def test_short_writes_are_carried_on_to_a_whole_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: real_write(fd, data[:10]))
    log = _log(tmp_path, 2)
    monkeypatch.undo()
    report = verify(log, SIGNER, None)
    assert (report.intact, report.entries) == (True, 2)


def test_a_deleted_log_goes_on_from_the_anchors_head_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    anchor = MemoryAnchor()
    log = _log(tmp_path, 3, anchor)
    assert anchor.head is not None
    head = anchor.head
    log.path.unlink()
    with caplog.at_level(logging.ERROR, logger="pgkeep.storage.audit"):
        log.append(who="alice", action="pin", result="succeeded")
    [entry] = log.read()
    assert (entry["seq"], entry["prev"]) == (4, head[1])
    assert caplog.messages == [
        f"audit log {log.path} is empty but its anchor records 3 entries: it was deleted or "
        "emptied; continuing the chain after them"
    ]


@pytest.mark.parametrize("left", ["not json\n", '{"seq": 1, "who"', "[1]\n"])
def test_a_log_of_nothing_but_a_broken_line_is_fenced_and_starts_a_chain(
    tmp_path: Path, left: str
) -> None:
    log = AuditLog(tmp_path / "audit.jsonl", SIGNER)
    log.path.write_text(left)
    log.append(who="alice", action="create", result="succeeded")
    fence, entry = log.read()[-2:]
    assert (fence["seq"], fence["prev"], fence["action"]) == (1, "0" * 64, TORN)
    assert fence["details"] == "a line after seq 0 was torn"
    assert (entry["seq"], entry["prev"]) == (2, fence["hash"])


def test_an_unreadable_last_line_is_fenced_at_the_next_append(tmp_path: Path) -> None:
    log = _log(tmp_path, 2)
    with log.path.open("a") as handle:
        handle.write("not json\n")
    log.append(who="alice", action="pin", result="succeeded")
    report = verify(log, SIGNER, None)
    assert (report.intact, report.entries) == (True, 5), report.problem
    assert [e.get("action") for e in log.read()[-2:]] == [TORN, "pin"]


def test_a_log_in_a_directory_not_made_yet_is_made_private_and_reading_makes_nothing(
    tmp_path: Path,
) -> None:
    assert AuditLog(tmp_path / "x" / "audit.jsonl", SIGNER).read() == []
    assert AuditLog(tmp_path / "x" / "audit.jsonl", SIGNER).page(0, 5) == ([], 0)
    assert not (tmp_path / "x").exists()
    log = AuditLog(tmp_path / "a" / "b" / "audit.jsonl", SIGNER)
    log.append(who="alice", action="create", result="succeeded")
    assert (tmp_path / "a" / "b").stat().st_mode & 0o777 == 0o700
    assert len(log.read()) == 1


def test_pages_of_a_dangling_symlink_are_refused(tmp_path: Path) -> None:
    link = tmp_path / "audit.jsonl"
    link.symlink_to(tmp_path / "gone")
    with pytest.raises(StorageError):
        AuditLog(link, SIGNER).page(0, 5)


def test_a_line_that_is_not_utf_8_is_one_unreadable_entry_of_a_page(tmp_path: Path) -> None:
    log = _log(tmp_path, 2)
    with log.path.open("ab") as handle:
        handle.write(b"\xff\xfe\n")
    entries, total = log.page(0, 10)
    assert total == 3
    assert entries[0] == {"_unreadable": 3}
