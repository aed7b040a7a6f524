"""HTTP Range at its boundaries (RFC 9110 §14): parsing, and the download route's handle."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from starlette.types import Message

from pgkeep.config import Settings
from pgkeep.http.ranges import Unsatisfiable, parse_range
from pgkeep.http.streaming import RangeResponse
from pgkeep.storage.local import LocalStorage
from tests.conftest import plant_backup

HUGE = "9" * 5000  # past Python's int() limit of 4,300 digits


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
        (f"bytes=0-{HUGE}", 100, (0, 100)),
        (f"bytes=-{HUGE}", 100, (0, 100)),
        (f"bytes={HUGE}-5", 100, None),  # last before first: ignored
        (f"bytes={'0' * 5000}5-{'0' * 5000}9", 100, (5, 10)),  # leading zeros count for nothing
        ("bytes=9223372036854775807-", 2**63, (2**63 - 1, 2**63)),
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
        (f"bytes={HUGE}-", 100),
        (f"bytes={HUGE}-{HUGE}", 100),
        ("bytes=10000000000000000000-", 2**63),
    ],
)
def test_unsatisfiable_ranges(header: str, size: int) -> None:
    with pytest.raises(Unsatisfiable):
        parse_range(header, size)


def _descriptors(of: Path | None = None) -> int:
    """This process's open descriptors; with `of`, only those open on that file (other
    threads of the app may open and close their own meanwhile)."""
    count = 0
    for fd in Path("/proc/self/fd").iterdir():
        try:
            count += of is None or fd.readlink() == of
        except OSError:
            continue  # closed meanwhile
    return count


@pytest.mark.anyio
async def test_download_huge_range_numbers_answer_and_close_the_backup(
    api: httpx.AsyncClient, auth: dict[str, str], settings: Settings
) -> None:
    """A 5,000-digit Range answered 500 and leaked the opened backup's descriptor."""
    data = b"-- planted\n" * 100
    name = plant_backup(settings, datetime(2024, 1, 1, tzinfo=UTC), data)
    url = f"/api/backup/download/{name}"
    await api.get(url, headers=auth)  # whatever a first request opens for good
    path = (settings.backup_dir / name).resolve()
    before = _descriptors(path)
    with path.open("rb"):  # the count sees a descriptor on the backup
        assert _descriptors(path) == before + 1
    for _ in range(25):
        past = await api.get(url, headers={**auth, "Range": f"bytes={HUGE}-"})
        whole = await api.get(url, headers={**auth, "Range": f"bytes=10-{HUGE}"})
        assert past.status_code == 416
        assert past.headers["content-range"] == f"bytes */{len(data)}"
        assert (whole.status_code, whole.content) == (206, data[10:])
    assert _descriptors(path) <= before


@pytest.mark.anyio
async def test_range_response_closes_its_handle_when_the_client_left_first(
    tmp_path: Path,
) -> None:
    """A client gone before the first chunk was asked for: the body never started, and
    the handle was closed only by its iterator's `finally`, which never ran."""
    storage = LocalStorage(tmp_path)
    storage.put("backup-2024-01-01T00-00-00.sql", b"x" * 100)
    handle = storage.open_read("backup-2024-01-01T00-00-00.sql")
    response = RangeResponse(
        handle, 0, 100, status_code=200, headers={}, media_type="application/sql"
    )
    before = _descriptors()

    async def gone() -> Message:
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        pass

    await response({"type": "http", "asgi": {"spec_version": "2.3"}}, gone, send)
    assert _descriptors() == before - 1
