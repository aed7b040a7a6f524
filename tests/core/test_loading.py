"""Loading a plain dump by its plan: what each run is given, and bytes not planned never run."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from pgkeep.core import loading
from pgkeep.core.models import Backup, Compression, DumpFormat, Trust
from pgkeep.core.reading import Reading
from pgkeep.core.restore_plan import ADMIN, LOADER, OWNER, Plan, Run
from pgkeep.errors import Corrupt, RestoreFailed
from pgkeep.storage import MemoryStorage, memory
from tests.core.test_manifests import MANIFEST
from tests.core.test_planning import DUMP, PREAMBLE, _entry, _plan, _sent

NAME = "backup-2025-05-06T07-08-09.sql"
SUPERUSER = DUMP.replace("Owner: app", "Owner: postgres").replace("TO app;", "TO postgres;")


class _Recorded:
    """A session that records what each run was given, piece by piece as it arrives (reading
    it to the end, as psql does); `spilled` says whether a run came from a file in `spool`.
    `postgres` is the one superuser here."""

    bare = False

    def __init__(self, spool: Path | None = None) -> None:
        self.runs: list[tuple[str, bytes]] = []
        self.owners: list[str] = []
        self.spilled: list[bool] = []
        self._spool = spool

    def run_sql(self, role: str, chunks: Iterable[bytes], owner: str = "") -> None:
        got = bytearray()
        self.runs.append((role, b""))
        self.owners.append(owner)
        if self._spool is not None:
            self.spilled.append(_open_in(self._spool))
        for chunk in chunks:
            assert chunk, "an empty piece"
            got += chunk
            self.runs[-1] = (role, bytes(got))

    def resolve(self, owner: str) -> str:
        return ADMIN if owner == "postgres" else LOADER

    def archive(self, chunks: Iterable[bytes], size_hint: int, imported: bool = False) -> Any:
        raise AssertionError("a plain dump")


def _chunks(data: bytes, size: int = 5) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


def _roles(session: _Recorded) -> list[str]:
    return [role for role, _ in session.runs]


def _open_in(directory: Path) -> bool:
    """Whether this process holds a file open in `directory` (one with no name counts)."""
    links = []
    for fd in Path("/proc/self/fd").iterdir():
        with contextlib.suppress(OSError):  # the listing's own descriptor, closed since
            links.append(fd.readlink())
    return any(link.is_relative_to(directory) for link in links)


def _without(text: str, run: Run, ranges: tuple[tuple[int, int], ...]) -> bytes:
    """What a run sends: its bytes less its skips and `ranges` (its owner statements)."""
    data = text.encode()
    out, at = b"", run.start
    for start, end in sorted((*run.skips, *ranges, (run.end, run.end))):
        out += data[at:start]
        at = max(at, end)
    return out


def test_each_run_gets_its_bytes_and_every_run_after_the_first_the_preamble() -> None:
    plan, _ = _plan(DUMP)
    session = _Recorded()
    loading.load_plain(session, plan, _chunks(DUMP.encode()), None)
    # The owner's runs are the loader's (app is no superuser), each followed by the admin
    # giving what it made to its owner.
    assert _roles(session) == [ADMIN, LOADER, ADMIN, LOADER, ADMIN, LOADER, LOADER, ADMIN]
    _, made, given, *rest = session.runs
    assert session.owners == ["", "app", "", "app", "", "app", "app", ""]  # each its owner's
    assert b"CREATE TABLE public.t" in made[1]
    assert b"OWNER TO" not in made[1]
    assert given[1] == plan.preamble.encode() + b"ALTER TABLE public.t OWNER TO app;\n"
    assert all(body.startswith(plan.preamble.encode()) for _, body in [made, given, *rest])
    assert b"SET default_tablespace = '';\n" in rest[0][1]
    assert not any(b"restrict" in body for _, body in session.runs)


def test_each_run_gets_exactly_its_planned_bytes_after_its_head() -> None:
    for text in (DUMP, SUPERUSER):
        plan, _ = _plan(text)
        session = _Recorded()
        loading.load_plain(session, plan, _chunks(text.encode(), 3), None)
        expected: list[tuple[str, bytes]] = []
        for index, run in enumerate(plan.runs):
            state = "".join(line + "\n" for line in run.state)
            head = b"" if index == 0 else (plan.preamble + state).encode()
            role = session.resolve(run.owner) if run.role == OWNER else run.role
            if role == ADMIN:
                expected.append((ADMIN, head + _sent(text, run)))
                continue
            expected.append((LOADER, head + _without(text, run, run.owned)))
            if run.owned:
                owned = b"\n".join(text.encode()[a:b] for a, b in run.owned)
                expected.append((ADMIN, plan.preamble.encode() + owned + b"\n"))
        assert session.runs == expected


def test_the_settings_of_each_run_follow_the_preamble_one_a_line() -> None:
    run = Run(LOADER, 0, 4, "", ("SET a = 1;", "SET b = 2;"))
    plan = Plan("SET x = 0;\n", (Run(ADMIN, 0, 0, "0" * 64), run), 4)
    assert loading._head(plan, run, False) == b"SET x = 0;\nSET a = 1;\nSET b = 2;\n"
    assert loading._head(plan, run, True) == b""


def test_a_superusers_entries_are_the_admins_and_keep_their_owner_statements() -> None:
    plan, _ = _plan(SUPERUSER)
    session = _Recorded()
    loading.load_plain(session, plan, _chunks(SUPERUSER.encode()), None)
    assert _roles(session) == [ADMIN, ADMIN, LOADER, ADMIN, LOADER, ADMIN, ADMIN]
    assert b"ALTER TABLE public.t OWNER TO postgres;" in session.runs[1][1]
    assert session.owners == ["", "", "postgres", "", "postgres", "", ""]


def test_an_imported_dump_gives_owners_only_at_its_end() -> None:
    plan, _ = _plan(DUMP, strict=True)
    session = _Recorded()
    loading.load_plain(session, plan, _chunks(DUMP.encode()), None)
    assert session.runs[-1] == (
        ADMIN,
        plan.preamble.encode() + b"ALTER TABLE public.t OWNER TO app;\n",
    )
    assert all(b"OWNER TO" not in body for _, body in session.runs[:-1])
    assert _roles(session).count(ADMIN) == 2  # the preamble, and the owners at the end


def test_an_imported_dumps_owner_statements_are_left_to_the_caller_when_asked() -> None:
    """A custom archive's sections are loaded one by one: owners only after the last."""
    plan, _ = _plan(DUMP, strict=True)
    session = _Recorded()
    at_end: list[bytes] = [b"ALTER TABLE public.u OWNER TO app;"]
    loading.load_plain(session, plan, _chunks(DUMP.encode()), None, at_end)
    assert at_end == [b"ALTER TABLE public.u OWNER TO app;", b"ALTER TABLE public.t OWNER TO app;"]
    assert all(b"OWNER TO" not in body for _, body in session.runs)


def test_a_loader_run_whose_bytes_were_not_planned_never_ends() -> None:
    """A loader run is streamed; psql never gets its last piece (so never COMMITs) when its
    bytes differ, and the admin never gets its owner statements."""
    plan, _ = _plan(DUMP)
    tampered = DUMP.replace("CREATE TABLE public.t (a int);", "CREATE TABLE public.t (b int);")
    session = _Recorded()
    with pytest.raises(Corrupt, match="not the ones planned"):
        loading.load_plain(session, plan, _chunks(tampered.encode()), None)
    assert _roles(session) == [ADMIN, LOADER]  # the failing run was stopped
    assert not session.runs[1][1].endswith(b"CREATE TABLE public.t (b int);\n\n")


def test_an_admin_run_whose_bytes_were_not_planned_never_starts() -> None:
    """A superuser's index (an admin run) replaced by a program: never run, nor anything after."""
    plan, _ = _plan(SUPERUSER)
    old, new = "CREATE INDEX t_i ON t (a);", "COPY (SELECT 1) TO PROGRAM 'x';"
    session = _Recorded()
    with pytest.raises(Corrupt, match="not the ones planned"):
        loading.load_plain(session, plan, _chunks(SUPERUSER.replace(old, new).encode()), None)
    assert _roles(session) == [ADMIN, ADMIN, LOADER, ADMIN, LOADER]
    assert not any(b"COPY (SELECT 1)" in body for _, body in session.runs)


def test_an_owners_run_whose_bytes_were_not_planned_never_ends_nor_anything_after() -> None:
    """The same in a run the loader streams: psql never gets its last piece."""
    plan, _ = _plan(DUMP)
    old, new = "CREATE INDEX t_i ON t (a);", "COPY (SELECT 1) TO PROGRAM 'x';"
    session = _Recorded()
    with pytest.raises(Corrupt, match="not the ones planned"):
        loading.load_plain(session, plan, _chunks(DUMP.replace(old, new).encode()), None)
    assert _roles(session) == [ADMIN, LOADER, ADMIN, LOADER, ADMIN, LOADER, LOADER]
    index = plan.runs[5]
    whole = loading._head(plan, index, False) + _sent(DUMP.replace(old, new), index)
    assert whole.startswith(session.runs[-1][1])
    assert len(session.runs[-1][1]) < len(whole)


@pytest.mark.parametrize(
    ("text", "old", "new", "index", "before"),
    [
        # The sequence's value (an admin run after three others): not even its head is sent.
        (DUMP, "'public.s', 3,", "'public.s', 4,", 3, [ADMIN, LOADER, ADMIN, LOADER]),
        # A superuser's table: the admin's, in the dump's second run.
        (SUPERUSER, "public.t (a int)", "public.x (a int)", 1, [ADMIN]),
    ],
)
def test_an_admin_run_is_proven_before_psql_gets_a_byte_of_it(
    text: str, old: str, new: str, index: int, before: list[str]
) -> None:
    """Tampered bytes in an admin run: it is never started, not even its head."""
    plan, _ = _plan(text)
    session = _Recorded()
    with pytest.raises(Corrupt, match="not the ones planned") as caught:
        loading.load_plain(session, plan, _chunks(text.replace(old, new).encode()), None)
    assert _roles(session) == before
    tampered = plan.runs[index]
    assert caught.value.message == (
        f"the dump's bytes {tampered.start}-{tampered.end} are not the ones planned"
    )
    assert caught.value.details.startswith("sha256 is ")
    assert caught.value.details.endswith(f", the signed plan says {tampered.sha256}")


@pytest.mark.parametrize(
    ("index", "before"),
    [
        (0, []),  # the preamble's
        (2, [ADMIN, LOADER, ADMIN]),  # the rows' (the loader's), after the table's and its owner
        (3, [ADMIN, LOADER, ADMIN, LOADER]),  # the sequence's value (the admin's)
    ],
)
def test_a_run_without_its_sha256_is_refused_before_psql_gets_a_byte_of_it(
    index: int, before: list[str]
) -> None:
    """A plan read back always has them (restore_plan.from_json); one without is refused
    where its run would start, whoever runs it."""
    plan, _ = _plan(DUMP)
    runs = list(plan.runs)
    for sha256 in ("", runs[index].sha256[:63]):
        runs[index] = replace(runs[index], sha256=sha256)
        session = _Recorded()
        with pytest.raises(Corrupt, match=r"^the restore plan has a run without its sha256$"):
            loading.load_plain(
                session, replace(plan, runs=tuple(runs)), _chunks(DUMP.encode()), None
            )
        assert _roles(session) == before


def test_an_admin_run_larger_than_memory_spills_to_the_spool_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan, _ = _plan(DUMP)
    monkeypatch.setattr(loading, "SPOOL_MEMORY", 100)
    session = _Recorded(tmp_path)
    loading.load_plain(session, plan, _chunks(DUMP.encode()), tmp_path)
    expected = []
    for run in plan.runs:
        expected.append(run.role == ADMIN and run.end - run.start > 100)
        if run.owned:
            expected.append(False)  # the owner statements, given after their run
    assert session.spilled == expected
    assert any(expected)
    assert list(tmp_path.iterdir()) == []  # nothing with a name, nothing left


def test_an_admin_run_within_memory_never_touches_the_spool_directory(tmp_path: Path) -> None:
    plan, _ = _plan(DUMP)
    session = _Recorded(tmp_path)
    loading.load_plain(session, plan, _chunks(DUMP.encode()), tmp_path)
    assert not any(session.spilled)
    assert len(session.spilled) == 8


def _backup(data: bytes, key: str | None, signed_data: bytes | None = None) -> Reading:
    """One read of a plain dump stored with a manifest recording `key` (and the sha256 of
    `signed_data`, by default the dump itself)."""
    storage = MemoryStorage()
    storage.put(NAME, data)
    manifest = replace(
        MANIFEST,
        name=NAME,
        compression=Compression.NONE,
        size_bytes=len(data),
        sha256=hashlib.sha256(data if signed_data is None else signed_data).hexdigest(),
        restrict_key=key,
    )
    at = datetime(2025, 5, 6, 7, 8, 9, tzinfo=UTC)
    backup = Backup(NAME, len(data), at, at, DumpFormat.PLAIN, Compression.NONE, manifest)
    return Reading(storage, replace(backup, trust=Trust.SIGNED))


def test_a_dump_made_before_plans_is_planned_when_it_opens_with_its_recorded_key() -> None:
    assert loading.plan_of(_backup(DUMP.encode(), "K1")) == _plan(DUMP)[0]
    reading = _backup(DUMP.encode(), "K1")
    without = Reading(reading._storage, replace(reading.backup, manifest=None))
    assert loading.plan_of(without) == _plan(DUMP)[0]


def test_an_imported_dump_made_before_plans_is_planned_strictly() -> None:
    """An import's plan runs every owner's entry as the loader, checked statement by statement."""
    reading = _backup(DUMP.encode(), None)
    assert reading.backup.manifest is not None
    imported = replace(reading.backup, manifest=replace(reading.backup.manifest, origin="import"))
    plan = loading.plan_of(Reading(reading._storage, imported))
    assert plan == _plan(DUMP, strict=True)[0]
    assert plan.imported
    assert not loading.plan_of(reading).imported
    hostile = DUMP.replace("CREATE INDEX t_i ON t (a);", "DO $$ BEGIN END $$;").encode()
    reading = _backup(hostile, None)
    assert loading.plan_of(reading).runs
    assert reading.backup.manifest is not None
    imported = replace(reading.backup, manifest=replace(reading.backup.manifest, origin="import"))
    with pytest.raises(Corrupt, match="not imported"):
        loading.plan_of(Reading(reading._storage, imported))


def test_a_plain_dump_with_no_recorded_key_is_planned_and_its_own_line_never_sent() -> None:
    """Imports record no key: any opening line is the dump's own, left out; psql still gets
    pgkeep's own key (postgres/session.py)."""
    for text in (DUMP, DUMP.replace("K1", "OTHER")):
        plan = loading.plan_of(_backup(text.encode(), None))
        sent = b"".join(_sent(text, run) for run in plan.runs)
        assert b"\\restrict" not in sent
    no_line = DUMP.replace("\\restrict K1\n", "")
    assert loading.plan_of(_backup(no_line.encode(), None)).runs


@pytest.mark.parametrize(
    "text",
    [
        DUMP.replace("\\restrict K1\n", "\\restrict K2\n"),  # another key
        DUMP.replace("\\restrict K1\n", ""),  # no opening line
        DUMP.replace("\\restrict K1\n", "SELECT 1;\n\\restrict K1\n"),  # not first
    ],
)
def test_a_dump_not_opening_with_its_manifests_key_is_refused(text: str) -> None:
    with pytest.raises(Corrupt, match="does not open with the \\\\restrict line") as caught:
        loading.plan_of(_backup(text.encode(), "K1"))
    assert caught.value.details == "it is not the dump that was signed"


def _sent_roles(plan: Plan) -> list[str]:
    """Who psql runs as for each of a plan's runs of DUMP (app no superuser), and the owner
    statements given after an owner's run."""
    roles = []
    for run in plan.runs:
        roles.append(ADMIN if run.role == ADMIN else LOADER)
        roles += [ADMIN] if run.owned else []
    return roles


def test_the_last_run_waits_for_the_whole_files_sha256(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bytes the plan holds but the manifest's sha256 does not: the last (admin) run never
    starts, and what ran before it ran in a staging database that is dropped."""
    monkeypatch.setattr(memory, "CHUNK_SIZE", 16)
    plan, _ = _plan(DUMP)
    assert plan.runs[-1].role == ADMIN
    reading = _backup(DUMP.encode(), "K1", signed_data=b"other bytes")
    session = _Recorded()
    with pytest.raises(Corrupt, match="does not match its manifest"):
        loading.load_plain(session, plan, reading.content(), None)
    assert _roles(session) == _sent_roles(plan)[:-1]


def test_a_last_run_ending_before_the_file_does_still_waits_for_its_sha256(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A signed plan may end before the dump's last bytes: the last run still starts only
    once the whole stored file's sha256 has matched."""
    monkeypatch.setattr(memory, "CHUNK_SIZE", 16)
    plan, _ = _plan(DUMP)
    data = DUMP.encode()
    *runs, last = plan.runs
    end = data.index(b"\n--\n-- PostgreSQL database dump complete")
    sha = hashlib.sha256(data[last.start : end]).hexdigest()
    trimmed = replace(plan, runs=(*runs, replace(last, end=end, sha256=sha, skips=())))
    session = _Recorded()
    loading.load_plain(session, trimmed, _backup(data, "K1").content(), None)
    head = loading._head(trimmed, last, False)
    assert session.runs[-1] == (ADMIN, head + data[last.start : end])
    session = _Recorded()
    reading = _backup(data, "K1", signed_data=b"other bytes")
    with pytest.raises(Corrupt, match="does not match its manifest"):
        loading.load_plain(session, trimmed, reading.content(), None)
    assert _roles(session) == _sent_roles(plan)[:-1]


def test_a_last_loader_run_is_read_to_the_end_before_the_load_returns(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The file's sha256 is checked at its end: a plan whose last run is the loader's still
    fails when the stored bytes are not the signed ones."""
    monkeypatch.setattr(memory, "CHUNK_SIZE", 16)
    plan, _ = _plan(DUMP)
    data = DUMP.encode()
    short = replace(plan, runs=plan.runs[:3])
    assert short.runs[-1].role == LOADER
    loading.load_plain(_Recorded(), short, _backup(data, "K1").content(), None)
    reading = _backup(data, "K1", signed_data=b"other bytes")
    with pytest.raises(Corrupt, match="does not match its manifest"):
        loading.load_plain(_Recorded(), short, reading.content(), None)


def test_which_backups_are_plain_and_which_plans_are_recorded() -> None:
    reading = _backup(DUMP.encode(), "K1")
    backup = reading.backup
    assert loading.plain(backup)
    assert not loading.plain(replace(backup, format=DumpFormat.CUSTOM))
    assert loading.recorded_plan(backup) is None
    plan, _ = _plan(DUMP)
    assert backup.manifest is not None
    planned = replace(backup, manifest=replace(backup.manifest, plan=plan))
    assert loading.recorded_plan(planned) == plan
    assert loading.recorded_plan(replace(backup, manifest=None)) is None


def test_the_archive_major_is_the_pg_dump_that_wrote_it() -> None:
    backup = _backup(DUMP.encode(), "K1").backup
    assert backup.manifest is not None
    for version, major in (("18.6", 18), ("9.6.24", 9), ("17beta1", 17), ("", 0), ("x", 0)):
        with_version = replace(backup, manifest=replace(backup.manifest, pg_dump_version=version))
        assert loading.archive_major(with_version) == major
    assert loading.archive_major(replace(backup, manifest=None)) == 0


def test_restored_rows_are_compared_with_the_manifest_table_by_table() -> None:
    backup = _backup(DUMP.encode(), "K1").backup
    assert backup.manifest is not None
    counted = replace(backup, manifest=replace(backup.manifest, row_counts={"a": 1, "b": 2}))
    tables = loading.compare(counted, {"b": 2, "a": 1})
    assert [(t.table, t.expected, t.actual, t.ok) for t in tables] == [
        ("a", 1, 1, True),
        ("b", 2, 2, True),
    ]
    with pytest.raises(RestoreFailed) as caught:
        loading.compare(counted, {"a": 1, "b": 3, "c": 0})
    assert caught.value.message == "restored row counts differ from the manifest in 2 tables"
    assert caught.value.details == "b: 3 rows, manifest 2, c: 0 rows, manifest -1"
    with pytest.raises(RestoreFailed, match="in 1 tables") as missing:
        loading.compare(counted, {"a": 1})
    assert missing.value.details == "b: -1 rows, manifest 2"
    many = {f"t{i:02}": i for i in range(12)}
    with pytest.raises(RestoreFailed, match="in 12 tables") as listed:
        loading.compare(replace(backup, manifest=replace(backup.manifest, row_counts=many)), {})
    assert listed.value.details.count("rows, manifest") == 10
    uncounted = replace(backup, manifest=replace(backup.manifest, row_counts=None))
    assert [(t.table, t.expected) for t in loading.compare(uncounted, {"x": 5})] == [("x", None)]
    assert loading.compare(replace(backup, manifest=None), {"x": 5})[0].ok


def test_a_dump_shorter_than_its_plan_is_refused() -> None:
    plan, _ = _plan(DUMP)
    with pytest.raises(Corrupt, match="ends before its restore plan"):
        loading.load_plain(_Recorded(), plan, _chunks(DUMP.encode()[:-400]), None)


def test_two_owner_statements_of_one_run_are_given_one_a_line() -> None:
    text = DUMP.replace(
        "ALTER TABLE public.t OWNER TO app;",
        "ALTER TABLE public.t OWNER TO app;\nALTER SEQUENCE public.s OWNER TO app;",
    )
    plan, _ = _plan(text)
    session = _Recorded()
    loading.load_plain(session, plan, _chunks(text.encode()), None)
    assert session.runs[2] == (
        ADMIN,
        plan.preamble.encode()
        + b"ALTER TABLE public.t OWNER TO app;\nALTER SEQUENCE public.s OWNER TO app;\n",
    )


def test_an_admin_run_is_given_to_psql_a_mebibyte_at_a_time() -> None:
    """However large an admin run is, psql gets it in pieces of at most 1 MiB (after its
    head), read from its spool."""
    big = "".join(f"-- {n:07} {'x' * 1000}\n" for n in range(2600))  # 2.5 MiB
    text = DUMP.replace("TO PUBLIC;\n", "TO PUBLIC;\n" + big)
    plan, _ = _plan(text, 64 * 1024)
    pieces: list[int] = []

    class Pieces(_Recorded):
        def run_sql(self, role: str, chunks: Iterable[bytes], owner: str = "") -> None:
            if role == ADMIN:
                pieces[:] = [len(chunk) for chunk in chunks]
            else:
                super().run_sql(role, chunks, owner)

    loading.load_plain(Pieces(), plan, _chunks(text.encode(), 64 * 1024), None)
    head = len(loading._head(plan, plan.runs[-1], False))
    assert pieces == [head, 1 << 20, 1 << 20, len(_sent(text, plan.runs[-1])) - (2 << 20)]


def test_an_admin_run_spills_to_the_systems_temporary_directory_without_a_spool(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(loading, "SPOOL_MEMORY", 100)
    monkeypatch.chdir(tmp_path)  # where a spool named "None" would be looked for
    plan, _ = _plan(DUMP)
    session = _Recorded()
    loading.load_plain(session, plan, _chunks(DUMP.encode()), None)
    assert len(session.runs) == 8
    assert list(tmp_path.iterdir()) == []


SECTIONS = {
    "pre-data": "--\n-- PostgreSQL database dump\n--\n\n"
    + PREAMBLE
    + _entry(
        "Name: t; Type: TABLE; Schema: public; Owner: app",
        "CREATE TABLE public.t (a int);\n\nALTER TABLE public.t OWNER TO app;",
    ),
    "post-data": "--\n-- PostgreSQL database dump\n--\n\n"
    + PREAMBLE.replace("UTF8", "LATIN1")
    + _entry("Name: t_i; Type: INDEX; Schema: public; Owner: app", "CREATE INDEX t_i ON t (a);")
    + _entry(
        "Name: TABLE t; Type: ACL; Schema: public; Owner: app",
        "GRANT SELECT ON TABLE public.t TO PUBLIC;",
    ),
}


class _Archived(_Recorded):
    """A session whose custom archive prints SECTIONS (or `sections`); every step is noted."""

    def __init__(self, sections: dict[str, str] = SECTIONS, spool: Path | None = None) -> None:
        super().__init__(spool)
        self.sections = sections
        self.steps: list[tuple[str, ...]] = []

    def run_sql(self, role: str, chunks: Iterable[bytes], owner: str = "") -> None:
        super().run_sql(role, chunks, owner)
        self.steps.append((role, self.runs[-1][1].decode()))

    @contextlib.contextmanager
    def archive(self, chunks: Iterable[bytes], size_hint: int, imported: bool = False) -> Any:
        self.steps.append(("staged", b"".join(chunks).decode(), str(size_hint), str(imported)))
        yield self

    @contextlib.contextmanager
    def printed(self, section: str) -> Iterator[Callable[[], Iterator[bytes]]]:
        self.steps.append(("printed", section))
        yield lambda: _chunks(self.sections[section].encode(), 7)
        self.steps.append(("closed", section))

    def load_data(self) -> None:
        self.steps.append(("data",))


def test_an_archives_schema_is_run_as_a_plain_dumps_around_its_rows() -> None:
    session = _Archived()
    loading.load_archive(session, iter([b"PGDMP", b"..."]), 8, False, None)
    pre, post = (_plan(SECTIONS[s])[0] for s in ("pre-data", "post-data"))
    pre_text, post_text = SECTIONS["pre-data"], SECTIONS["post-data"]

    def loaded(plan: Plan, text: str, index: int) -> str:
        run = plan.runs[index]
        return (loading._head(plan, run, False) + _without(text, run, run.owned)).decode()

    assert session.steps == [
        ("staged", "PGDMP...", "8", "False"),
        ("printed", "pre-data"),
        (ADMIN, _sent(pre_text, pre.runs[0]).decode()),
        (LOADER, loaded(pre, pre_text, 1)),
        (ADMIN, pre.preamble + "ALTER TABLE public.t OWNER TO app;\n"),
        ("closed", "pre-data"),
        ("data",),
        ("printed", "post-data"),
        (ADMIN, _sent(post_text, post.runs[0]).decode()),
        (LOADER, loaded(post, post_text, 1)),
        (ADMIN, loaded(post, post_text, 2)),
        ("closed", "post-data"),
    ]
    assert "CREATE TABLE public.t (a int);" in session.steps[3][1]
    assert "LATIN1" in post.preamble
    assert session.owners == ["", "app", "", "", "app", ""]


def test_an_imported_archive_is_planned_strictly_and_gives_owners_after_its_last_section() -> None:
    session = _Archived()
    loading.load_archive(session, iter([b"PGDMP"]), 5, True, None)
    roles = [step[0] for step in session.steps]
    assert roles == [
        "staged",
        "printed",
        ADMIN,
        LOADER,
        "closed",
        "data",
        "printed",
        ADMIN,
        LOADER,  # the index and the grant: the loader's in an import
        "closed",
        ADMIN,
    ]
    assert session.steps[0] == ("staged", "PGDMP", "5", "True")
    post = _plan(SECTIONS["post-data"])[0]
    assert session.steps[-1] == (ADMIN, post.preamble + "ALTER TABLE public.t OWNER TO app;\n")
    assert all("OWNER TO" not in step[-1] for step in session.steps[:-1])
    hostile = {
        **SECTIONS,
        "post-data": SECTIONS["post-data"].replace("CREATE INDEX", "DO $$ $$; --"),
    }
    loading.load_archive(_Archived(hostile), iter([b"PGDMP"]), 5, False, None)
    session = _Archived(hostile)
    with pytest.raises(Corrupt, match="not imported"):
        loading.load_archive(session, iter([b"PGDMP"]), 5, True, None)
    assert ("data",) in session.steps
    assert session.steps[-1] == ("printed", "post-data")  # nothing of it ran, no owners given


def test_an_archive_with_no_owner_statements_gives_none() -> None:
    sections = {
        s: text.replace("ALTER TABLE public.t OWNER TO app;", "") for s, text in SECTIONS.items()
    }
    for imported in (False, True):
        session = _Archived(sections)
        loading.load_archive(session, iter([b"PGDMP"]), 5, imported, None)
        assert session.steps[-1] == ("closed", "post-data")


def test_an_archives_large_admin_runs_spill_to_the_spool_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(loading, "SPOOL_MEMORY", 100)
    session = _Archived(spool=tmp_path)
    loading.load_archive(session, iter([b"PGDMP"]), 5, False, tmp_path)
    admin = [step[1] for step in session.steps if step[0] == ADMIN]
    spilled = [
        s for s, (role, _) in zip(session.spilled, session.runs, strict=True) if role == ADMIN
    ]
    assert spilled == [len(text) > 100 and "OWNER TO" not in text for text in admin]
    assert any(spilled)


@pytest.mark.parametrize("dump", [DUMP, SUPERUSER], ids=["loader", "admin"])
def test_a_bare_session_is_given_no_owners_and_no_grants(dump: str) -> None:
    """A rehearsal's session (pg_restore --no-owner --no-privileges): the loader's objects
    are never given to their owners and the dump's GRANTs never run; everything else does."""
    plan, _ = _plan(dump)
    normal, bare = _Recorded(), _Recorded()
    bare.bare = True
    loading.load_plain(normal, plan, _chunks(dump.encode()), None)
    loading.load_plain(bare, plan, _chunks(dump.encode()), None)
    sent = b"".join(run for _, run in normal.runs)
    assert b"OWNER TO" in sent
    assert b"GRANT " in sent
    sent = b"".join(run for _, run in bare.runs)
    assert b"OWNER TO" not in sent
    assert b"GRANT " not in sent
    assert sent.count(b"CREATE TABLE") == dump.count("CREATE TABLE") > 0
