"""Following a plain dump as psql does: an entry's header only counts between statements."""

from __future__ import annotations

import pytest

from pgkeep.core import sqlscan

HEADER = "--\n-- Name: t; Type: TABLE; Schema: public; Owner: app\n--\n\n"
FAKE = "\n--\n-- Data for Name: x; Type: TABLE DATA; Schema: public; Owner: app\n--\n"


def _scan(text: str, size: int = 7) -> tuple[list[sqlscan.Header], list[sqlscan.Statement]]:
    headers: list[sqlscan.Header] = []
    statements: list[sqlscan.Statement] = []
    scanner = sqlscan.Scanner(headers.append, statements.append)
    data = text.encode()
    for i in range(0, len(data), size):
        scanner.feed(data[i : i + size])
    scanner.finish()
    return headers, statements


def test_a_header_between_statements_opens_an_entry_where_its_block_starts() -> None:
    text = "SET a = 1;\n\n" + HEADER + "CREATE TABLE t (i int);\n"
    headers, statements = _scan(text)
    assert [(h.start, h.data) for h in headers] == [(text.index("--\n-- Name"), False)]
    assert [s.words[:2] for s in statements] == [("set", "a"), ("create", "table")]


@pytest.mark.parametrize(
    "hiding",
    [
        "COMMENT ON TABLE t IS '{fake}';",  # a string
        "COMMENT ON TABLE t IS 'it''s{fake}';",  # with a doubled quote before
        "COMMENT ON TABLE t IS E'\\'{fake}';",  # an E string with an escaped quote
        'CREATE TABLE "{fake}" (i int);',  # a quoted name
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $body${fake}$body$;",  # a body
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $${fake}$$;",
        "/* a comment /* nested */{fake}*/ SELECT 1;",  # a nested comment
        "COPY public.t (a) FROM stdin;\n{fake}\\.",  # rows
    ],
)
def test_a_header_written_where_psql_reads_data_is_not_an_entry(hiding: str) -> None:
    text = HEADER + hiding.replace("{fake}", FAKE.replace("\n", "\n", 1)) + "\n"
    headers, _ = _scan(text)
    assert [h.line for h in headers] == ["-- Name: t; Type: TABLE; Schema: public; Owner: app"]


@pytest.mark.parametrize(
    "opening",
    [
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1;",
        # A function named `begin` (unreserved, so pg_dump leaves it unquoted) opens a BEGIN
        # that psql waits to see ended: the next entry, rows and all, would be its text.
        "CREATE FUNCTION public.begin() RETURNS integer LANGUAGE sql AS $$ SELECT 1 $$;",
        "CREATE TABLE t (i int,",
    ],
)
def test_a_header_inside_an_unended_statement_is_refused(opening: str) -> None:
    text = HEADER + opening + "\n" + FAKE + "SELECT 1;\n"
    with pytest.raises(sqlscan.ScanError, match="inside an unended statement"):
        _scan(text)


def test_copy_data_ends_at_its_own_line_whatever_the_chunks() -> None:
    rows = "".join(f"{i}\\tx\\.y --\n" for i in range(200)) + "\\.\n"
    text = "COPY public.t (a, b) FROM stdin;\n" + rows + HEADER + "SELECT 1;\n"
    for size in (1, 2, 3, 5, 64, 4096):
        headers, statements = _scan(text, size)
        assert len(headers) == 1, size
        assert [s.words[0] for s in statements] == ["copy", "select"]


def test_a_copy_row_of_any_length_is_passed_over_not_kept() -> None:
    row = "x" * (3 * 1024 * 1024)
    text = "COPY public.t (a) FROM stdin;\n" + row + "\n\\.\n" + HEADER
    scanner = sqlscan.Scanner()
    data = text.encode()
    for i in range(0, len(data), 65536):
        scanner.feed(data[i : i + 65536])
        assert len(scanner._buffer) <= 65536 + 4
    scanner.finish()


def test_a_copy_data_line_ending_in_backslash_dot_does_not_end_it() -> None:
    text = "COPY public.t (a) FROM stdin;\nx\\.\n" + FAKE + "\\.\n" + HEADER
    for size in (1, 2, 3, 4, 9):
        headers, _ = _scan(text, size)
        assert [h.data for h in headers] == [False], size


def test_backslash_lines_are_reported_only_between_statements() -> None:
    metas: list[sqlscan.MetaLine] = []
    scanner = sqlscan.Scanner(on_meta=metas.append)
    scanner.feed(b"\\restrict K1\nSELECT '\n\\! not a command\n';\n\\unrestrict K1\n")
    scanner.finish()
    assert [m.text for m in metas] == ["\\restrict K1", "\\unrestrict K1"]


def test_a_dump_that_ends_inside_a_string_cannot_be_read() -> None:
    with pytest.raises(sqlscan.ScanError, match="ends inside"):
        _scan("SELECT 'unended;\n")


def test_statements_say_their_first_and_last_words() -> None:
    _, statements = _scan('create MATERIALIZED view "v" AS SELECT 1 WITH NO DATA;\n')
    [statement] = statements
    assert statement.words[:3] == ("create", "materialized", "view")
    assert statement.last_words[-3:] == ("with", "no", "data")


def _all(data: bytes, sizes: list[int]) -> tuple[list[object], int]:
    """Everything the scanner reports, in order, fed in pieces of `sizes` (repeating; 0
    feeds an empty piece, as a reader may)."""
    found: list[object] = []
    scanner = sqlscan.Scanner(found.append, found.append, found.append)
    at, turn = 0, 0
    while at < len(data) or turn < len(sizes):
        size = sizes[turn % len(sizes)]
        scanner.feed(data[at : at + size])
        at, turn = at + size, turn + 1
    scanner.finish()
    return found, scanner.position


def test_statements_say_exactly_where_they_start_and_end() -> None:
    text = b"  SELECT 1; SET a = 2;\n\tSELECT\n  'x;' ;\n\\restrict K\r\nSELECT 3;"
    found, position = _all(text, [len(text)])
    meta, last = text.index(b"\\restrict"), text.index(b"SELECT 3")
    assert found == [
        sqlscan.Statement(2, 11, ("select",), ("select",), "SELECT 1;"),
        sqlscan.Statement(12, 22, ("set", "a"), ("set", "a"), "SET a = 2;"),
        sqlscan.Statement(24, 39, ("select",), ("select",), ""),  # over two lines: no text
        sqlscan.MetaLine(meta, last, "\\restrict K"),
        sqlscan.Statement(last, len(text), ("select",), ("select",), "SELECT 3;"),  # no newline
    ]
    assert position == len(text)
    for size in (1, 2, 3, 5, 8):
        assert _all(text, [size]) == (found, len(text))


@pytest.mark.parametrize(
    ("text", "count"),
    [
        ("SELECT 1 -- not the end;\n, 2;", 1),
        ("SELECT /* ; */ 1;", 1),
        ("SELECT E'\\';' ;", 1),
        ("SELECT ';' ;", 1),
        ('SELECT ";" FROM t;', 1),
        ("SELECT $x$;$x$;", 1),
        ("SELECT ((1) ; 2);", 1),
        ("SELECT f(';', (1; 2)); SELECT 2;", 2),
        ("SELECT 1); SELECT 2;", 2),
        ("SELECT 1; ; SELECT 2;", 3),  # psql sends the empty one too
        ("SELECT E'a'; SELECT 2;", 2),
        ("SELECT e'a\\'; SELECT 2;';", 1),
    ],
)
def test_only_a_semicolon_psql_would_end_on_ends_a_statement(text: str, count: int) -> None:
    found, _ = _all(text.encode() + b"\n", [3])
    assert len(found) == count
    assert isinstance(found[-1], sqlscan.Statement)
    assert found[-1].end == len(text)


def test_a_statement_of_up_to_4096_bytes_on_one_line_keeps_its_text() -> None:
    for size, kept in ((sqlscan.SHORT_STATEMENT, True), (sqlscan.SHORT_STATEMENT + 1, False)):
        text = "SELECT '" + "x" * (size - 10) + "';"
        assert len(text) == size
        [statement], _ = _all(text.encode() + b"\n", [1000])
        assert isinstance(statement, sqlscan.Statement)
        assert statement.text == (text if kept else "")


def test_a_short_statement_after_a_long_one_on_its_line_keeps_its_text() -> None:
    first = "SELECT '" + "x" * 3000 + "';"
    [long, short], _ = _all(f"{first} SELECT '{'y' * 2000}';\n".encode(), [10_000])
    assert isinstance(long, sqlscan.Statement)
    assert isinstance(short, sqlscan.Statement)
    assert long.text == first
    assert short.text == f"SELECT '{'y' * 2000}';"


def test_a_backslash_line_keeps_its_text_but_not_its_line_end() -> None:
    found, _ = _all(b"\\restrict K1 \r\n\\x\t\n", [100])
    assert found == [sqlscan.MetaLine(0, 15, "\\restrict K1 "), sqlscan.MetaLine(15, 19, "\\x\t")]


def test_bytes_that_are_not_utf_8_are_reported_replaced() -> None:
    text = b"CREATE caf\xff;\n\\restrict K\xff\n"
    text += b"--\n-- Name: t\xff; Type: TABLE; Schema: s; Owner: o \n"
    found, _ = _all(text, [len(text)])
    word = "caf\ufffd"
    assert found == [
        sqlscan.Statement(0, 12, ("create", word), ("create", word), "CREATE caf\ufffd;"),
        sqlscan.MetaLine(13, 26, "\\restrict K\ufffd"),
        sqlscan.Header(26, "-- Name: t\ufffd; Type: TABLE; Schema: s; Owner: o ", False),
    ]


@pytest.mark.parametrize(
    "opening",
    [
        "-- Name: t; Type: TABLE; Schema: public; Owner: app\n",  # no `--` line before it
        "-- a comment\n-- Name: t; Type: TABLE; Schema: public; Owner: app\n",
        "-- \n-- Name: t; Type: TABLE; Schema: public; Owner: app\n",  # `--` and a space
        "--X\n-- Name: t; Type: TABLE; Schema: public; Owner: app\n",
        "--\nSELECT 1;\n-- Name: t; Type: TABLE; Schema: public; Owner: app\n",
        "--\n\\x\n-- Name: t; Type: TABLE; Schema: public; Owner: app\n",
        "--\n\n-- Name: t; Type: TABLE; Schema: public; Owner: app\n",
    ],
)
def test_a_name_line_is_a_header_only_right_after_a_bare_comment_line(opening: str) -> None:
    headers, _ = _scan(opening + "--\n\nSELECT 1;\n")
    assert headers == []


def test_a_header_keeps_its_whole_line() -> None:
    headers, _ = _scan("--\n-- Name: t; Type: TABLE; Schema: s; Owner: X \n--\n")
    assert [h.line for h in headers] == ["-- Name: t; Type: TABLE; Schema: s; Owner: X "]


def test_a_header_may_end_its_lines_with_crlf() -> None:
    headers, _ = _scan("SELECT 1;\n--\r\n-- Name: t; Type: TABLE; Schema: public; Owner: app\r\n")
    assert [h.start for h in headers] == [10]


def test_a_header_inside_a_statement_that_started_the_dump_is_refused() -> None:
    """A statement at offset 0 is open as much as one further on: a header inside it is
    refused (pg_dump never writes one there), not taken for an entry."""
    text = "SELECT 1\n" + FAKE + "\\! id\n;\n" + HEADER + "SELECT 2;\n"
    with pytest.raises(sqlscan.ScanError, match="inside an unended statement"):
        _scan(text)


COPIES = [
    "COPY public.t (a) FROM stdin;\n\\.\n",  # no rows
    "COPY public.t (a) FROM stdin;" + FAKE + "\\.\n",
    "COPY public.t (a) FROM stdin;\r\n1\r\n\\.\r\n",
    "COPY public.t (a) FROM stdin;\n\\.x\nx\\.\n\\.\r\n",
    "COPY public.t (a) FROM stdin;\n\\.\r\r\n\\.\n",
    "COPY public.t (a) FROM stdin;\n" + "row\n" * 3 + "\\.\n",
    "COPY public.t (a) FROM stdin;\n1234\n\\.x\nabcd\\.\n5678\n\\.\n",
    # Two in one chunk, an entry between them.
    "COPY public.t (a) FROM stdin;\n1\n\\.\n" + HEADER + "COPY public.u (a) FROM stdin;\n2\n\\.\n",
]


@pytest.mark.parametrize("copy", COPIES)
def test_copy_data_ends_at_its_own_line_wherever_the_chunks_split(copy: str) -> None:
    text = (copy + HEADER + "SELECT 1;\n").encode()
    expected, _ = _all(text, [len(text)])
    copies = copy.count("COPY")
    kinds = ["Statement", "Header"] * copies + ["Statement"]
    assert [type(f).__name__ for f in expected] == kinds
    assert isinstance(expected[-1], sqlscan.Statement)
    assert expected[-1].start == text.index(b"SELECT 1")
    for split in range(1, len(text)):
        assert _all(text, [split, len(text)]) == (expected, len(text)), split
        assert _all(text, [split, 0, len(text)]) == (expected, len(text)), split
    for size in range(1, 9):
        assert _all(text, [size]) == (expected, len(text)), size


def test_copy_data_never_ended_is_not_read_as_statements() -> None:
    text = b"COPY public.t (a) FROM stdin;\n1\nSELECT 1;"
    found, _ = _all(text, [4])
    assert [type(f).__name__ for f in found] == ["Statement"]


def test_a_from_stdin_outside_a_copy_starts_no_data() -> None:
    headers, statements = _scan("SELECT a FROM stdin;\n" + HEADER + "SELECT 1;\n")  # noqa: S608
    assert len(headers) == 1
    assert len(statements) == 2


def test_a_line_past_the_limit_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlscan, "MAX_LINE", 10)
    scanner = sqlscan.Scanner()
    scanner.feed(b"SELECT '12")  # 10 bytes, no newline yet: kept
    scanner.feed(b"\n")
    scanner.feed(b"x" * 10)
    with pytest.raises(sqlscan.ScanError, match="a line of more than 10 bytes"):
        scanner.feed(b"x")
