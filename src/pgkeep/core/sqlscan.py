"""Reading a plain dump the way psql reads it, to find pg_dump's entries (pure, streamed).

psql runs a plain dump statement by statement; pg_dump writes each archive entry
after a comment block naming it (`-- Name: t; Type: TABLE; …` or
`-- Data for Name: t; Type: TABLE DATA; …`). Such a block only opens an entry
when psql would read it as a comment between statements: inside a string, a
quoted name, a dollar-quoted function body or COPY data, the same text is data,
and a database's owner can write it there. So this follows psql's lexer
(psqlscan.l): '…' and E'…' strings, "…" names, $tag$…$tag$ bodies, -- and
nested /* */ comments, parentheses, BEGIN … END in `CREATE FUNCTION` bodies, and
`COPY … FROM stdin;` whose data runs to a line `\\.`.

Each complete statement is reported too (its first words and its offsets), so an
import can be checked statement by statement, and the `\\restrict` lines pg_dump
opens and closes a dump with are reported where they stand.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from pgkeep.core import sqltokens

_HEADER = re.compile(rb"-- (Data for )?Name: [^\n]*\n\Z")
MAX_LINE = 64 * 1024 * 1024  # a COPY row or a function body line; beyond it, refused
SHORT_STATEMENT = 4096


class ScanError(ValueError):
    """The bytes are not a dump psql could read (an unended string at the end, a huge line)."""


@dataclass(frozen=True)
class Header:
    """An entry's comment block: `start` is where the block begins (its first `--` line)."""

    start: int
    line: str  # the `-- Name: …` line, without its newline
    data: bool  # `-- Data for Name:`: rows (TABLE DATA, BLOBS)


@dataclass(frozen=True)
class Statement:
    start: int
    end: int
    words: tuple[str, ...]  # the first few words, lower-cased (outside strings and comments)
    last_words: tuple[str, ...]  # the last few words before the semicolon, lower-cased
    text: str = ""  # the statement itself when it is short and on one line (SET …)


@dataclass(frozen=True)
class MetaLine:
    start: int
    end: int
    text: str  # e.g. "\\restrict KEY"


class Scanner:
    """Feed the dump in chunks; callbacks hear of headers, statements and backslash lines."""

    def __init__(
        self,
        on_header: Callable[[Header], None] = lambda h: None,
        on_statement: Callable[[Statement], None] = lambda s: None,
        on_meta: Callable[[MetaLine], None] = lambda m: None,
    ) -> None:
        self._on_header = on_header
        self._on_statement = on_statement
        self._on_meta = on_meta
        self._buffer = b""
        self._offset = 0  # of _buffer[0] in the dump
        self._quote: bytes | None = None  # b"'", b"E'", b'"', b"$tag$", b"/*"
        self._depth = 0  # of nested /* */ comments
        self._copy = False  # reading COPY data until a line \.
        self._copy_next = False  # a COPY … FROM stdin; ended on this line
        self._midline = False  # in COPY data, the next byte does not start a line
        self._statement = sqltokens.Words()
        self._block: int | None = None  # where a run of comment lines began

    @property
    def position(self) -> int:
        """Offset up to which the dump has been read as whole lines."""
        return self._offset

    @property
    def pending(self) -> int | None:
        """Where a run of comment lines began that may still turn out to be an entry's header."""
        return self._block

    def feed(self, chunk: bytes) -> None:
        data = self._buffer + chunk if self._buffer else chunk
        pos = 0
        while True:
            if self._copy:
                end = self._copy_end(data, pos)
                if end is None:
                    keep = self._copy_tail(data, pos)
                    break
                pos = end
                continue
            newline = data.find(b"\n", pos)
            if newline < 0:
                keep = pos
                break
            self._line(data[pos : newline + 1], self._offset + pos)
            pos = newline + 1
        rest = data[keep:]
        if len(rest) > MAX_LINE:
            raise ScanError(f"a line of more than {MAX_LINE} bytes")
        self._offset += keep
        self._buffer = rest

    def finish(self) -> None:
        """The end of the dump: a last line without a newline is read; nothing may be open."""
        if self._buffer and not self._copy:
            self._line(self._buffer, self._offset)
            self._offset += len(self._buffer)
            self._buffer = b""
        if self._quote is not None:
            raise ScanError(f"the dump ends inside {self._quote.decode(errors='replace')!s}")

    def _copy_tail(self, data: bytes, pos: int) -> int:
        """What to keep of COPY data that did not end here: the start of a last line that may
        still turn out to be `\\.`. A longer unfinished line (a row of any size) is passed
        over, remembering that the next bytes do not start a line."""
        newline = data.rfind(b"\n", pos)
        start, at_line = (newline + 1, True) if newline >= 0 else (pos, not self._midline)
        if start == len(data):
            self._midline = not at_line
            return start
        if at_line and len(data) - start <= 3:
            self._midline = False
            return start
        self._midline = True
        return len(data)

    def _copy_end(self, data: bytes, pos: int) -> int | None:
        """Where COPY data ends (after its `\\.` line), looking from `pos`; None: not here."""
        if not self._midline and data.startswith((b"\\.\n", b"\\.\r\n"), pos):
            end = data.index(b"\n", pos) + 1
        else:
            found = data.find(b"\n\\.", pos)
            while found >= 0 and data[found + 3 : found + 4] != b"\n":
                if data[found + 3 : found + 5] == b"\r\n" or len(data) < found + 5:
                    break  # `\.\r\n`, or too near the end to tell: decided below
                found = data.find(b"\n\\.", found + 3)
            if found < 0 or not data.startswith((b"\n\\.\n", b"\n\\.\r\n"), found):
                return None
            end = data.index(b"\n", found + 1) + 1
        self._copy = False
        self._midline = False
        return end

    def _line(self, line: bytes, offset: int) -> None:
        top = self._quote is None and self._statement.start < 0
        if top and line.startswith(b"--"):
            self._comment_line(line, offset)
            return
        if top and line.startswith(b"\\"):
            self._block = None
            text = line.rstrip(b"\r\n").decode("utf-8", "replace")
            self._on_meta(MetaLine(offset, offset + len(line), text))
            return
        if top and not line.strip():
            self._block = None
            return
        if self._quote is None and _HEADER.match(line):
            # pg_dump never writes an entry's header inside a statement; psql would send
            # what follows (the next entry, rows included) as part of it (a function named
            # `begin` opens a BEGIN … END block psql waits to see closed).
            raise ScanError(
                f"an entry's header at byte {offset} falls inside an unended statement "
                f"(begun at byte {self._statement.start}): psql would run what follows as "
                "part of it"
            )
        self._block = None
        self._tokens(line, offset)
        if self._copy_next:
            self._copy_next = False
            self._copy = True

    def _comment_line(self, line: bytes, offset: int) -> None:
        if line.rstrip(b"\r\n") == b"--" and self._block is None:
            self._block = offset
            return
        if _HEADER.match(line) and self._block is not None:
            text = line.rstrip(b"\n").decode("utf-8", "replace")
            self._on_header(Header(self._block, text, line.startswith(b"-- Data for ")))
            self._block = None

    def _tokens(self, line: bytes, offset: int) -> None:
        pos = 0
        while pos < len(line):
            if self._quote is not None:
                pos, self._quote, self._depth = sqltokens.quote_end(
                    line, pos, self._quote, self._depth
                )
                continue
            match = sqltokens.TOKEN.match(line, pos)
            assert match is not None  # noqa: S101 (`other` matches any byte)
            kind, text = match.lastgroup, match.group()
            pos = match.end()
            if kind == "ws" or (kind == "other" and text == b"\n"):
                continue
            if kind == "line_comment":
                return
            if self._statement.start < 0:
                self._statement = sqltokens.Words(start=offset + match.start())
            if kind == "block":
                self._quote, self._depth = b"/*", 1
            elif kind == "estring":
                self._quote = b"E'"
            elif kind in ("string", "ident") or kind == "dollar":
                self._quote = text
            elif kind == "word":
                self._statement.word(text.lower())
            elif text == b"(":
                self._statement.parens += 1
            elif text == b")":
                self._statement.parens = max(0, self._statement.parens - 1)
            elif text == b";" and not self._statement.open:
                start = self._statement.start - offset
                one_line = start >= 0 and pos - start <= SHORT_STATEMENT
                self._end_statement(offset + pos, line[start:pos] if one_line else b"")

    def _end_statement(self, end: int, text: bytes) -> None:
        s = self._statement
        words = tuple(w.decode("utf-8", "replace") for w in s.words)
        last = tuple(w.decode("utf-8", "replace") for w in s.last)
        self._on_statement(Statement(s.start, end, words, last, text.decode("utf-8", "replace")))
        if words[:1] == ("copy",) and last[-2:] == ("from", "stdin"):
            self._copy_next = True
        self._statement = sqltokens.Words()
