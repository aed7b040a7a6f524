"""psql's lexer, piece by piece: where each kind of quote ends, and which `;` ends a statement."""

from __future__ import annotations

import pytest

from pgkeep.core import sqlscan
from pgkeep.core.sqltokens import FIRST_WORDS, Words, quote_end


@pytest.mark.parametrize(
    ("line", "pos", "quote", "depth", "found"),
    [
        # '…' and "…": the quote doubled is one of it.
        (b"abc'def", 0, b"'", 0, (4, None, 0)),
        (b"a''b'c", 0, b"'", 0, (5, None, 0)),
        (b"''x'", 0, b"'", 0, (4, None, 0)),
        (b"a''", 0, b"'", 0, (3, b"'", 0)),
        (b"a''b'c'", 0, b"'", 0, (5, None, 0)),
        (b"a'''b'", 0, b"'", 0, (4, None, 0)),
        (b"x'y'", 2, b"'", 0, (4, None, 0)),
        (b'a""b"c', 0, b'"', 0, (5, None, 0)),
        (b"a'b\"c", 0, b'"', 0, (4, None, 0)),
        (b"no end\n", 0, b"'", 0, (7, b"'", 0)),
        # E'…': backslash escapes too.
        (b"a\\'b'c", 0, b"E'", 0, (5, None, 0)),
        (b"a''b'c", 0, b"E'", 0, (5, None, 0)),
        (b"\\\\'x", 0, b"E'", 0, (3, None, 0)),
        (b"'", 0, b"E'", 0, (1, None, 0)),
        (b"x'y'", 2, b"E'", 0, (4, None, 0)),
        (b"ab\\", 0, b"E'", 0, (3, b"E'", 0)),
        (b"ab", 0, b"E'", 0, (2, b"E'", 0)),
        # $tag$…$tag$: only the same tag ends it.
        (b"x$$ y $$", 0, b"$$", 0, (3, None, 0)),
        (b"a$$ $b$c", 0, b"$b$", 0, (7, None, 0)),
        (b"$b$", 1, b"$b$", 0, (3, b"$b$", 0)),
        (b"abc\n", 0, b"$b$", 0, (4, b"$b$", 0)),
        # /* … */ nests.
        (b"a */ b", 0, b"/*", 1, (4, None, 0)),
        (b"/* x */ y */ z", 0, b"/*", 1, (12, None, 0)),
        (b"/**/*/", 0, b"/*", 1, (6, None, 0)),
        (b"x */ y", 0, b"/*", 2, (6, b"/*", 1)),
        (b"/* /* x", 0, b"/*", 1, (7, b"/*", 3)),
        (b"*/ */ /* */", 3, b"/*", 1, (5, None, 0)),
        (b"a */", 4, b"/*", 1, (4, b"/*", 1)),
    ],
)
def test_where_a_quote_ends(
    line: bytes, pos: int, quote: bytes, depth: int, found: tuple[int, bytes | None, int]
) -> None:
    assert quote_end(line, pos, quote, depth) == found


def _words(text: str) -> Words:
    words = Words(start=0)
    for word in text.lower().split():
        words.word(word.encode())
    return words


def test_a_statement_keeps_its_first_and_last_words() -> None:
    many = " ".join(f"w{i}" for i in range(20))
    words = _words(many)
    assert words.words == [f"w{i}".encode() for i in range(FIRST_WORDS)]
    assert words.last == [b"w16", b"w17", b"w18", b"w19"]
    assert _words("a").last == [b"a"]


def _statements(text: str) -> list[tuple[str, ...]]:
    found: list[sqlscan.Statement] = []
    scanner = sqlscan.Scanner(on_statement=found.append)
    scanner.feed(text.encode())
    scanner.finish()
    return [s.words[:3] for s in found]


@pytest.mark.parametrize(
    "body",
    [
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT 2; END;",
        "CREATE PROCEDURE p() LANGUAGE sql BEGIN ATOMIC SELECT 1; END;",
        "CREATE OR REPLACE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; END;",
        "CREATE OR REPLACE PROCEDURE p() LANGUAGE sql BEGIN ATOMIC SELECT 1; END;",
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql "
        "BEGIN ATOMIC SELECT CASE WHEN true THEN 1 END; SELECT 2; END;",
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql "
        "BEGIN ATOMIC BEGIN ATOMIC SELECT 1; END; SELECT 2; END;",
    ],
)
def test_a_function_body_in_begin_end_is_one_statement(body: str) -> None:
    assert len(_statements(body + "\nSELECT 3;\n")) == 2


@pytest.mark.parametrize(
    "text",
    [
        "CREATE OR REPLACE VIEW begin AS SELECT 1;",
        "CREATE PUBLICATION begin FOR ALL TABLES;",
        "CREATE TABLE begin (a int);",
        "CREATE OR REPLACE TRIGGER begin AFTER INSERT ON t EXECUTE FUNCTION f();",
        "COMMENT ON FUNCTION begin() IS 'x';",
        "CREATE FUNCTION f(begin int) RETURNS int LANGUAGE sql RETURN 1;",
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql RETURN CASE WHEN true THEN 1 END;",
        "SELECT begin, end;",
    ],
)
def test_begin_and_end_elsewhere_do_not_hold_a_statement_open(text: str) -> None:
    assert len(_statements(text + "\nSELECT 2;\n")) == 2
