"""HTTP Range parsing at its boundaries (RFC 9110 §14)."""

from __future__ import annotations

import pytest

from pgkeep.http.ranges import Unsatisfiable, parse_range


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        (None, 100, None),
        ("bytes=0-0", 100, (0, 1)),
        ("bytes=0-99", 100, (0, 100)),
        ("bytes=0-100", 100, (0, 100)),  # past the end: clipped
        ("bytes=10-", 100, (10, 100)),
        ("bytes=99-", 100, (99, 100)),
        ("bytes=-1", 100, (99, 100)),
        ("bytes=-100", 100, (0, 100)),
        ("bytes=-500", 100, (0, 100)),
        (" bytes=5-9 ", 100, (5, 10)),
        ("bytes=5-4", 100, None),  # last before first: ignored
        ("bytes=0-1,5-6", 100, None),  # several ranges: whole object
        ("bytes=-", 100, None),
        ("bytes=a-b", 100, None),
        ("items=0-1", 100, None),
        ("bytes=\u0663-\u0665", 100, None),  # other scripts' digits are not digits here
    ],
)
def test_parse_range(header: str | None, size: int, expected: tuple[int, int] | None) -> None:
    assert parse_range(header, size) == expected


@pytest.mark.parametrize(
    ("header", "size"),
    [
        ("bytes=100-", 100),
        ("bytes=100-200", 100),
        ("bytes=-0", 100),
        ("bytes=-5", 0),
        ("bytes=0-", 0),
    ],
)
def test_unsatisfiable_ranges(header: str, size: int) -> None:
    with pytest.raises(Unsatisfiable):
        parse_range(header, size)
