"""psql's lexer, the parts a plain dump needs: tokens, where a quote ends, statement words.

As psqlscan.l: '…' strings (the quote doubled is one of it), E'…' strings (backslash
escapes too), "…" names, $tag$…$tag$ bodies, nested /* */ comments; a `;` ends a
statement only outside parentheses and outside BEGIN … END in the body of a
`CREATE [OR REPLACE] FUNCTION|PROCEDURE` (and CASE … END inside such a BEGIN).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

TOKEN = re.compile(
    rb"""
    (?P<ws>[ \t\r\f\v]+)
  | (?P<line_comment>--)
  | (?P<block>/\*)
  | (?P<estring>[eE]')
  | (?P<string>')
  | (?P<ident>")
  | (?P<dollar>\$(?:[A-Za-z_\x80-\xff][A-Za-z0-9_\x80-\xff]*)?\$)
  | (?P<word>[A-Za-z_\x80-\xff][A-Za-z0-9_$\x80-\xff]*)
  | (?P<number>[0-9][0-9A-Za-z_.]*)
  | (?P<param>\$[0-9]+)
  | (?P<other>.)
    """,
    re.VERBOSE | re.DOTALL,
)
_FUNCTION_START = (b"create", b"function", b"procedure", b"or", b"replace")
FIRST_WORDS = 12


def quote_end(line: bytes, pos: int, quote: bytes, depth: int) -> tuple[int, bytes | None, int]:
    """Reading `line` from `pos` inside `quote` (depth: of nested comments): where reading goes
    on, the quote still open there (None: it ended), and the comment depth."""
    if quote == b"/*":
        return _comment_end(line, pos, depth)
    if quote.startswith(b"$"):
        end = line.find(quote, pos)
        return (len(line), quote, 0) if end < 0 else (end + len(quote), None, 0)
    if quote == b"E'":
        while pos < len(line):
            char = line[pos : pos + 1]
            if char == b"\\" or (char == b"'" and line[pos + 1 : pos + 2] == b"'"):
                pos += 2
            elif char == b"'":
                return pos + 1, None, 0
            else:
                pos += 1
        return len(line), quote, 0
    end = line.find(quote, pos)  # '…' or "…"
    while end >= 0 and line[end + 1 : end + 2] == quote:
        end = line.find(quote, end + 2)
    return (len(line), quote, 0) if end < 0 else (end + 1, None, 0)


def _comment_end(line: bytes, pos: int, depth: int) -> tuple[int, bytes | None, int]:
    while pos < len(line):
        opening, closing = line.find(b"/*", pos), line.find(b"*/", pos)
        if closing < 0:
            return len(line), b"/*", depth + line.count(b"/*", pos)
        if 0 <= opening < closing:
            depth, pos = depth + 1, opening + 2
            continue
        depth, pos = depth - 1, closing + 2
        if depth == 0:
            return pos, None, 0
    return pos, b"/*", depth


@dataclass
class Words:
    """One statement as psql follows it: where it starts, its words, its depth."""

    start: int = -1
    words: list[bytes] = field(default_factory=list)
    last: list[bytes] = field(default_factory=list)
    count: int = 0  # identifiers seen, as psql counts them
    kind: list[bytes] = field(default_factory=list)  # create [or replace] function|procedure
    parens: int = 0
    begins: int = 0

    @property
    def open(self) -> bool:
        """Inside parentheses or a function body's BEGIN: a `;` does not end it."""
        return bool(self.parens or self.begins)

    def word(self, word: bytes) -> None:
        if len(self.words) < FIRST_WORDS:
            self.words.append(word)
        self.last = [*self.last[-3:], word]
        if self.count < 4:
            self.kind.append(word[:1] if word in _FUNCTION_START else b"")
        self.count += 1
        k = [*self.kind, b"", b"", b"", b""]
        function = k[0] == b"c" and (
            k[1] in (b"f", b"p") or (k[1] == b"o" and k[2] == b"r" and k[3] in (b"f", b"p"))
        )
        if not function or self.parens:
            return
        if word == b"begin" or (word == b"case" and self.begins):
            self.begins += 1
        elif word == b"end" and self.begins:
            self.begins -= 1
