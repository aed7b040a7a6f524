"""Mutants made by hand, for what mutmut leaves alone: decorated functions (naming.parse),
module constants, properties, modules outside its list, and the faults a review named.

Each is a file under src/pgkeep, a piece of its text (present exactly once), what it is
replaced with, and the fast tests that must fail once it is (tests/hand_mutation.py
runs them; `make mutate` reports them with mutmut's).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Mutant:
    file: str  # under src/pgkeep
    original: str
    replacement: str
    tests: tuple[str, ...]  # pytest node ids
    why: str


_AGE = "tests/core/test_age_writer.py"
_AGE_FRESH = (
    f"{_AGE}::test_each_file_has_a_fresh_secret_file_key_and_nonce_and_fresh_ephemeral_keys",
)

_PLANNING = "tests/core/test_planning.py"
_LOADING = "tests/core/test_loading.py"
_SESSION = "tests/postgres/test_session.py"
_NAMING = ("tests/core/test_naming.py",)
_RULES = ("tests/core/test_restore_rules.py",)
_READING = ("tests/core/test_reading.py",)
_LOCAL = "tests/storage/test_local_write.py"
_LOCAL_ORDER = (
    f"{_LOCAL}::test_the_file_is_on_disk_before_its_name_and_its_name_before_the_commit_returns",
    f"{_LOCAL}::test_a_replacing_commit_renames_after_the_fsync_then_syncs_the_directory",
)
_NAMED = """\
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = -1
            if replace:
                self._partial.replace(self._final)
            else:
                os.link(self._partial, self._final)  # fails rather than replace an existing file
                self._partial.unlink()
"""
_NAMED_THEN_FSYNCED = """\
            if replace:
                self._partial.replace(self._final)
            else:
                os.link(self._partial, self._final)  # fails rather than replace an existing file
                self._partial.unlink()
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = -1
"""
_S3 = "tests/storage/test_s3_write.py"
_LEASES = "tests/core/test_leases.py"
_COPIES = "tests/core/test_copies.py"
_IMPORT_RULES = ("tests/core/test_import_rules.py",)
_TICKETS = ("tests/test_tickets.py::test_a_ticket_lives_sixty_seconds_unless_told_otherwise",)

MUTANTS: tuple[Mutant, ...] = (
    Mutant(
        "core/age_writer.py",
        "file_key = os.urandom(16)",
        "file_key = bytes(16)",
        _AGE_FRESH,
        "a fixed file key",
    ),
    Mutant(
        "core/age_writer.py",
        "file_key = os.urandom(16)",
        "file_key = hashlib.sha256(repr(recipients).encode()).digest()[:16]",
        _AGE_FRESH,
        "a file key derived from the recipients",
    ),
    Mutant(
        "core/age_writer.py",
        "nonce = os.urandom(16)",
        "nonce = bytes(16)",
        _AGE_FRESH,
        "a fixed payload nonce",
    ),
    Mutant(
        "core/age_writer.py",
        "nonce = os.urandom(16)",
        "nonce = file_key",
        _AGE_FRESH,
        "the file key written as the nonce",
    ),
    Mutant(
        "core/age_writer.py",
        "    for public in recipients:\n        ephemeral = X25519PrivateKey.generate()\n",
        "    ephemeral = X25519PrivateKey.generate()\n    for public in recipients:\n",
        _AGE_FRESH,
        "one ephemeral key for every recipient of a file",
    ),
    Mutant(
        "core/age_writer.py",
        "ephemeral = X25519PrivateKey.generate()",
        'ephemeral = X25519PrivateKey.from_private_bytes(b"\\x01" * 32)',
        _AGE_FRESH,
        "one ephemeral key for every file",
    ),
    Mutant(
        "core/planning.py",
        "self._open = _Open(role, owner, cut, state)",
        "self._open = _Open(role, owner, cut, self._state_now())",
        (
            f"{_PLANNING}::test_each_run_gets_the_settings_in_effect_where_it_starts_however_it_is_fed",
        ),
        "a run's settings taken from where the dump was read up to, not where the run starts",
    ),
    Mutant(
        "core/planning.py",
        "self._first_meta = False  # only comments",
        "pass  # only comments",
        (f"{_PLANNING}::test_only_comments_may_come_before_the_dumps_own_restrict_line",),
        "a statement before the dump's `\\restrict` line",
    ),
    Mutant(
        "core/loading.py",
        "if recorded is not None and planner.opening_key != recorded:",
        "if recorded is not None and planner.opening_key is None:",
        (f"{_LOADING}::test_a_dump_not_opening_with_its_manifests_key_is_refused",),
        "a dump opening with another key than its manifest's",
    ),
    Mutant(
        "core/loading.py",
        "if recorded is not None and planner.opening_key != recorded:",
        "if planner.opening_key != recorded:",
        (
            f"{_LOADING}::test_a_plain_dump_with_no_recorded_key_is_planned_and_its_own_line_never_sent",
        ),
        "a plain dump with no recorded key refused",
    ),
    Mutant(
        "postgres/session.py",
        "guarded = _restricted(chunks)",
        "guarded = chunks",
        (f"{_SESSION}::test_psql_gets_pgkeeps_own_fresh_restrict_line_first_in_every_run",),
        "psql fed without pgkeep's own \\restrict line",
    ),
    Mutant(
        "postgres/session.py",
        'yield b"\\\\restrict " + secrets.token_hex(16).encode() + b"\\n"',
        'yield b"\\\\restrict K1\\n"',
        (f"{_SESSION}::test_psql_gets_pgkeeps_own_fresh_restrict_line_first_in_every_run",),
        "psql restricted with the dump's own key",
    ),
    Mutant(
        "postgres/session.py",
        "secrets.token_hex(16)",
        '("5" * 32)',
        (f"{_SESSION}::test_psql_gets_pgkeeps_own_fresh_restrict_line_first_in_every_run",),
        "the same restrict key for every run",
    ),
    Mutant(
        "postgres/session.py",
        "    yield from chunks\n",
        '    yield from chunks\n    yield b"\\\\unrestrict " + b"0" * 32 + b"\\n"\n',
        (f"{_SESSION}::test_the_guard_line_comes_first_and_is_fresh_each_time",),
        "an \\unrestrict after the run",
    ),
    Mutant(
        "core/naming.py",
        "[0-9]{2}-[0-9]{2}T",
        "[0-9]{2}-[0-9]{1,2}T",
        _NAMING,
        "a one-digit day in a backup name",
    ),
    Mutant(
        "core/naming.py",
        "(?P<seq>[2-9]|",
        "(?P<seq>[1-9]|",
        _NAMING,
        "a -1 suffix",
    ),
    Mutant(
        "core/naming.py",
        "created = datetime(y, mo, d, h, mi, sec, tzinfo=UTC)",
        "created = datetime(y, mo, d, h, mi, sec)",
        _NAMING,
        "parse gives a naive time",
    ),
    Mutant(
        "core/naming.py",
        'int(match["seq"]) if match["seq"] else 1',
        'int(match["seq"]) if match["seq"] else 0',
        _NAMING,
        "parse numbers the first backup of a second 0",
    ),
    Mutant(
        "core/naming.py",
        "MAX_SEQUENCE = 9999",
        "MAX_SEQUENCE = 999",
        _NAMING,
        "fewer backups a second than names allow",
    ),
    Mutant(
        "tickets.py",
        "TICKET_TTL_SECONDS = 60",
        "TICKET_TTL_SECONDS = 600",
        _TICKETS,
        "download tickets live ten minutes",
    ),
    Mutant(
        "tickets.py",
        "ttl: int = TICKET_TTL_SECONDS,",
        "ttl: int = 120,",
        _TICKETS,
        "the issuer's default lifetime not the constant",
    ),
    Mutant(
        "core/restore_rules.py",
        'r"[A-Za-z_][A-Za-z0-9_\\-]{0,62}", re.ASCII',
        'r"[^\\W\\d][\\w\\-]{0,62}"',
        _RULES,
        "non-ASCII database names",
    ),
    Mutant(
        "core/restore_rules.py",
        "{0,62}",
        "{0,63}",
        _RULES,
        "a 64-character database name",
    ),
    Mutant(
        "core/restore_rules.py",
        '{"template0", "template1", "postgres"}',
        '{"template0", "template1"}',
        _RULES,
        "postgres may be restored into",
    ),
    Mutant(
        "core/restore_rules.py",
        'SCRATCH_PREFIX = "pgkeep_verify_"',
        'SCRATCH_PREFIX = "pgkeep_verify__"',
        _RULES,
        "verify's scratch databases may be restored into",
    ),
    Mutant(
        "core/restore_rules.py",
        'STAGING_PREFIX = "pgkeep_restore_"',
        'STAGING_PREFIX = "pgkeep_restore__"',
        _RULES,
        "a restore's staging databases may be restored into",
    ),
    Mutant(
        "core/reading.py",
        "return manifest.sha256 if manifest is not None else None",
        "return None",
        _READING,
        "the reader's expected sha256 (a property) never set: nothing compared",
    ),
    Mutant(
        "core/reading.py",
        "            self._problem,\n            self.opened,\n            self._complete,",
        "            self._problem,\n            self.opened,\n            True,",
        _READING,
        "a read stopped early reported complete (the outcome property)",
    ),
    Mutant(
        "storage/local_write.py",
        "            os.fsync(self._fd)\n            os.close(self._fd)\n",
        "            os.close(self._fd)\n",
        _LOCAL_ORDER,
        "no fsync of the file before it is named",
    ),
    Mutant(
        "storage/local_write.py",
        _NAMED,
        _NAMED_THEN_FSYNCED,
        _LOCAL_ORDER,
        "the file fsynced after it is named",
    ),
    Mutant(
        "storage/local_write.py",
        "            fsync_dir(self._final.parent)\n",
        "",
        _LOCAL_ORDER,
        "no fsync of the directory after the name",
    ),
    Mutant(
        "storage/local_write.py",
        "fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)",
        "fd = os.open(directory.parent, os.O_RDONLY | os.O_DIRECTORY)",
        (f"{_LOCAL}::test_fsync_dir_syncs_the_directory_and_closes_it",),
        "the wrong directory fsynced",
    ),
    Mutant(
        "storage/local_write.py",
        "os.link(self._partial, self._final)  # fails rather than replace an existing file\n"
        "                self._partial.unlink()",
        "self._partial.replace(self._final)",
        (f"{_LOCAL}::test_a_commit_never_replaces_a_backup_of_the_same_name",),
        "a commit that replaces an existing backup",
    ),
    Mutant(
        "storage/s3_write.py",
        "        self._thread.join()\n        self._raise_failure()\n",
        "        self._thread.join()\n",
        (f"{_S3}::test_a_failed_last_part_leaves_nothing_visible_and_aborts_the_upload",),
        "an upload completed without its failed last part",
    ),
    Mutant(
        "storage/s3_write.py",
        "        if not self._committed:\n",
        "        if False:\n",
        (f"{_S3}::test_a_failed_last_part_leaves_nothing_visible_and_aborts_the_upload",),
        "a failed upload never aborted",
    ),
    Mutant(
        "storage/s3_write.py",
        'IfNoneMatch="*",',
        "",
        (f"{_S3}::test_two_writers_never_overwrite_one_name",),
        "a completion that overwrites another writer's backup",
    ),
    Mutant(
        "core/leases.py",
        "self._last_renewed = asked",
        "self._last_renewed = self._clock()",
        (f"{_LEASES}::test_silence_is_counted_from_when_the_renewal_was_asked_for",),
        "silence counted from the answer, not the request",
    ),
    Mutant(
        "core/leases.py",
        '"stopped: its lease lapsed and another instance took over", failed=True',
        '"stopped: its lease lapsed and another instance took over"',
        (f"{_LEASES}::test_a_job_another_instance_took_over_stops_and_fails",),
        "a job another instance took over ends cancelled, not failed",
    ),
    Mutant(
        "core/leases.py",
        '"no other instance\'s run of it could overlap",\n                failed=True,',
        '"no other instance\'s run of it could overlap",',
        (f"{_LEASES}::test_an_instance_cut_off_for_half_the_lease_stops_its_jobs_as_failed",),
        "a job fenced off ends cancelled, not failed",
    ),
    Mutant(
        "core/leases.py",
        "self._jobs.stop_jobs(\n                lost,",
        "(lambda *a, **k: None)(\n                lost,",
        (f"{_LEASES}::test_a_job_another_instance_took_over_stops_and_fails",),
        "a job another instance took over keeps running",
    ),
    Mutant(
        "core/leases.py",
        "REAP_EVERY = 5",
        "REAP_EVERY = 50",
        (f"{_LEASES}::test_lapsed_jobs_are_reaped_on_the_first_beat_and_every_few_after",),
        "lapsed leases looked for ten times less often",
    ),
    Mutant(
        "core/proving.py",
        "            if backup.signed:\n",
        "            if backup.trust in (Trust.SIGNED, Trust.UNSIGNED):\n",
        (
            f"{_COPIES}::test_an_unsigned_copy_never_stands_in_for_a_damaged_primary_in_a_restore",
            f"{_COPIES}::test_an_unsigned_copy_never_stands_in_for_a_damaged_primary_in_a_verify",
        ),
        "a copy with an unsigned manifest stands in for a damaged primary",
    ),
    Mutant(
        "core/service.py",
        "                if not backup.signed:\n",
        "                if backup.manifest is None:\n",
        (f"{_COPIES}::test_an_unsigned_copy_is_never_downloaded_for_a_lost_primary",),
        "a copy with an unsigned manifest downloaded for a lost primary",
    ),
    Mutant(
        "wiring.py",
        "protected=frozenset({self.control.dbname}),",
        "protected=frozenset(),",
        ("tests/test_wiring.py",),
        "the control database not protected from restores",
    ),
    Mutant(
        "wiring.py",
        "replace_allow=frozenset(s.restore_replace_allow),",
        "replace_allow=frozenset(),",
        ("tests/test_wiring.py",),
        "PGKEEP_RESTORE_REPLACE_ALLOW ignored",
    ),
    # Module constants and properties of the modules mutmut covers (it leaves them alone).
    Mutant(
        "core/import_rules.py",
        '        "row_security",\n',
        '        "row_security",\n        "role",\n',
        _IMPORT_RULES,
        "an import may SET ROLE",
    ),
    Mutant(
        "core/import_rules.py",
        '        "pg_restore_attribute_stats",\n',
        '        "pg_restore_attribute_stats",\n        "pg_read_file",\n',
        _IMPORT_RULES,
        "an import may SELECT pg_catalog.pg_read_file",
    ),
    Mutant(
        "core/import_rules.py",
        '"security", "drop"}',
        '"security", "drop", "do"}',
        _IMPORT_RULES,
        "an import may run a DO block",
    ),
    Mutant(
        "core/restore_plan.py",
        '_CHECK = re.compile(r"; Type: CHECK CONSTRAINT; Schema: ")',
        '_CHECK = re.compile(r"; Type: CHECK CONSTRAINTS; Schema: ")',
        ("tests/core/test_planning.py",),
        "CHECK constraints run by the admin",
    ),
    Mutant(
        "core/restore_plan.py",
        "return sum(r.role != ADMIN for r in self.runs)",
        "return sum(r.role == LOADER for r in self.runs)",
        ("tests/core/test_restore_plan.py",),
        "an owner's runs not counted as the loader's (a property)",
    ),
    Mutant(
        "core/restore_plan.py",
        'STATE = ("default_tablespace", ',
        "STATE = (",
        ("tests/core/test_planning.py",),
        "the tablespace not carried into later runs",
    ),
    Mutant(
        "core/restore_plan.py",
        "PLAN_VERSION = 2",
        "PLAN_VERSION = 3",
        ("tests/core/test_restore_plan.py",),
        "plans written under another version",
    ),
    Mutant(
        "core/planning.py",
        "sha256 = o.digest.hexdigest()",
        'sha256 = o.digest.hexdigest() if o.role == ADMIN else ""',
        (f"{_PLANNING}::test_every_run_carries_the_sha256_of_its_bytes",),
        "loader runs planned without a sha256 (plan v1: streamed unproven)",
    ),
    Mutant(
        "core/sqlscan.py",
        'rb"-- (Data for )?Name: ',
        'rb"-- (Data for )Name: ',
        ("tests/core/test_sqlscan.py",),
        "only data entries have headers",
    ),
    Mutant(
        "core/sqlscan.py",
        "        return self._offset\n",
        "        return self._offset + len(self._buffer)\n",
        ("tests/core/test_planning.py",),
        "the scanner's position counts bytes not read as lines yet (a property)",
    ),
    Mutant(
        "core/sqltokens.py",
        "return bool(self.parens or self.begins)",
        "return bool(self.parens)",
        ("tests/core/test_sqltokens.py",),
        "a function body's BEGIN holds no statement open (a property)",
    ),
    Mutant(
        "core/sqltokens.py",
        "(?P<estring>[eE]')",
        "(?P<estring>E')",
        ("tests/core/test_sqlscan.py",),
        "e'' strings read as plain strings",
    ),
    Mutant(
        "core/sqltokens.py",
        'b"function", b"procedure", ',
        'b"function", ',
        ("tests/core/test_sqltokens.py",),
        "procedure bodies not followed",
    ),
    Mutant(
        "core/sqltokens.py",
        "FIRST_WORDS = 12",
        "FIRST_WORDS = 2",
        _IMPORT_RULES,
        "too few first words kept to judge a statement",
    ),
    Mutant(
        "http/limits.py",
        r'_CONTROL = re.compile(r"[\x00-\x1f\x7f]")',
        r'_CONTROL = re.compile(r"[\x00-\x1f]")',
        ("tests/http/test_limits.py",),
        "DEL in a path let through",
    ),
    Mutant(
        "core/audit.py",
        'GENESIS = "0" * 64',
        'GENESIS = "1" * 64',
        ("tests/storage/test_audit.py",),
        "another genesis hash",
    ),
    Mutant(
        "storage/audit.py",
        "_TAIL_BYTES = 64 * 1024",
        "_TAIL_BYTES = 64",
        ("tests/storage/test_audit.py",),
        "the head looked for in too short a tail",
    ),
    Mutant(
        "storage/audit.py",
        "_OPEN_FLAGS = os.O_NOFOLLOW | os.O_CLOEXEC",
        "_OPEN_FLAGS = os.O_CLOEXEC",
        ("tests/storage/test_audit.py",),
        "the audit log followed through a symlink",
    ),
    Mutant(
        "core/signing.py",
        "KEY_ID_BYTES = 8",
        "KEY_ID_BYTES = 4",
        ("tests/core/test_signing.py::test_key_ids_and_canonical_form_never_change",),
        "shorter key ids",
    ),
    Mutant(
        "tokens.py",
        "MAX_TTL_SECONDS = 366 * 86400",
        "MAX_TTL_SECONDS = 3660 * 86400",
        (
            "tests/test_tokens.py::test_parse_ttl_refuses",
            "tests/test_tokens.py::test_parse_ttl_upper_bound_is_inclusive",
        ),
        "tokens minted for ten years",
    ),
    Mutant(
        "tokens.py",
        '"h": 3600, "d": 86400}',
        '"h": 3600, "d": 8640}',
        ("tests/test_tokens.py::test_parse_ttl",),
        "a day of a token's lifetime miscounted",
    ),
    Mutant(
        "http/ranges.py",
        "_MAX_DIGITS = 19",
        "_MAX_DIGITS = 5000",
        ("tests/http/test_ranges.py",),
        "Range numbers past int()'s 4,300 digits parsed",
    ),
    Mutant(
        "core/manifests.py",
        "PRELOAD_MIN = 8",
        "PRELOAD_MIN = 1000",
        ("tests/core/test_manifests.py",),
        "manifests never read several at once",
    ),
    Mutant(
        "core/age_writer.py",
        "CHUNK = 64 * 1024",
        "CHUNK = 32 * 1024",
        ("tests/core/test_age_writer.py::test_pyrage_opens_every_size_and_fed_any_way",),
        "a STREAM chunk of another size than age's",
    ),
    Mutant(
        "core/age_writer.py",
        '_X25519_INFO = b"age-encryption.org/v1/X25519"',
        '_X25519_INFO = b"age-encryption.org/v1/x25519"',
        (f"{_AGE}::test_each_recipient_opens_it_and_nobody_else",),
        "the X25519 stanza keyed with another label",
    ),
    Mutant(
        "storage/s3_write.py",
        "MIN_PART = 8 * 1024 * 1024",
        "MIN_PART = 4 * 1024 * 1024",
        ("tests/storage/test_s3_write.py",),
        "parts too small to reach five terabytes",
    ),
    Mutant(
        "storage/s3_write.py",
        "TIERS = 10",
        "TIERS = 9",
        ("tests/storage/test_s3_write.py",),
        "part sizes grow in fewer tiers",
    ),
    Mutant(
        "core/restore_plan.py",
        '        "ACL",\n',
        '        "ACL",\n        "TABLE",\n',
        (f"{_PLANNING}::test_who_runs_an_entry",),
        "a table made by pgkeep's session whoever owns it",
    ),
    Mutant(
        "core/restore_plan.py",
        '_ARCHIVE_ADMIN_DATA = ("SEQUENCE SET ", ',
        '_ARCHIVE_ADMIN_DATA = ("TABLE DATA ", "SEQUENCE SET ", ',
        ("tests/core/test_restore_plan.py::test_who_runs_an_archives_entry",),
        "an archive's rows restored by pgkeep's session",
    ),
    Mutant(
        "core/import_rules.py",
        '_ROLE_WORDS = frozenset({"role", ',
        "_ROLE_WORDS = frozenset({",
        _IMPORT_RULES,
        "an import may CREATE ROLE",
    ),
    Mutant(
        "core/import_rules.py",
        'rf"CREATE EXTENSION IF NOT EXISTS {_NAME};"',
        'rf"CREATE EXTENSION IF NOT EXISTS {_NAME}.*;"',
        _IMPORT_RULES,
        "pgkeep's session runs an import's extension statement with more in it",
    ),
    Mutant(
        "core/import_rules.py",
        """_ARGS = r'(?:\\((?:[^()\\'";]|"(?:[^"]|"")*")*\\))?'""",
        "_ARGS = r'(?:\\(.*\\))?'",
        _IMPORT_RULES,
        "an import's owner statement may call a function in its signature",
    ),
    Mutant(
        "core/proving.py",
        "if self.copies and deleting.tombstoned(self.catalog, name):",
        "if False:",
        (f"{_COPIES}::test_a_deleted_backup_is_never_served_from_a_copy",),
        "a deleted backup restored from a copy the delete did not reach",
    ),
    Mutant(
        "core/service.py",
        "if self.copier and deleting.tombstoned(self.catalog, name):",
        "if False:",
        (f"{_COPIES}::test_a_deleted_backup_is_never_served_from_a_copy",),
        "a deleted backup downloaded from a copy the delete did not reach",
    ),
    Mutant(
        "core/deleting.py",
        "return signed and all(",
        "return all(",
        (f"{_COPIES}::test_a_tombstone_not_signed_here_counts_for_nothing",),
        "a tombstone anyone wrote hides a lost backup's copies",
    ),
    Mutant(
        "core/restore_plan.py",
        'ownerless = owner == "" or (owner == "-" and fields["type"] in OWNERLESS)',
        'ownerless = owner in ("", "-")',
        (f"{_PLANNING}::test_who_runs_an_entry",),
        "a role named '-' taken for no owner: its code run by pgkeep's session",
    ),
    Mutant(
        "core/restore_plan.py",
        'OWNERLESS = frozenset({"CAST", ',
        'OWNERLESS = frozenset({"VIEW", "CAST", ',
        (f"{_PLANNING}::test_who_runs_an_entry",),
        "a role named '-''s views made by pgkeep's session",
    ),
)
