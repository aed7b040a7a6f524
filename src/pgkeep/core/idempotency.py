"""Creates that scripts can retry: an `Idempotency-Key` names one job for 24 hours.

The first request with a key, from one caller, starts the job; a repeat with the same
fingerprint (caller, method, path with query, canonical JSON body) gets that job: while
it runs, finished or failed alike, never a second dump. Only when that job failed or was
cancelled does a repeat start a new one. The same key with another fingerprint is
refused (`Unprocessable`). Records live where every instance sees them (`Claims`).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from pgkeep.core.jobs import Job, JobStatus
from pgkeep.errors import Busy, InvalidInput, Unprocessable

KEEP_FOR = timedelta(hours=24)
MAX_KEY_LENGTH = 255
POLL_SECONDS = 0.05
STARTING_SECONDS = 30.0  # how long a repeat waits for the first request to name its job


@dataclass(frozen=True)
class Claim:
    """A key's record: whose it is, the fingerprint it was first used with, and its job
    (None while the first request is starting it). `mine`: this call made the record."""

    fingerprint: str
    job_id: str | None
    mine: bool


class Claims(Protocol):
    def claim(self, caller: str, key: str, fingerprint: str, now: datetime) -> Claim:
        """The key's record, made now (with no job) if there is none younger than 24 h."""
        ...

    def assign(self, caller: str, key: str, job_id: str | None, previous: str | None) -> bool:
        """Set the record's job to `job_id` if it is still `previous`; whether it was."""
        ...

    def release(self, caller: str, key: str) -> None:
        """Forget a record whose job never started (the start was refused)."""
        ...


def fingerprint(caller: str, method: str, path: str, body: Any) -> str:
    """SHA-256 over the caller, the method, the path with its query and the canonical
    JSON of the body (sorted keys, no spaces)."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    text = json.dumps([caller, method.upper(), path, canonical])
    return hashlib.sha256(text.encode()).hexdigest()


def check_key(key: str) -> str:
    if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise InvalidInput("invalid Idempotency-Key", f"1 to {MAX_KEY_LENGTH} printable characters")
    return key


class Idempotent:
    """Starts a job once per (caller, key, fingerprint); repeats get that job."""

    def __init__(
        self,
        claims: Claims,
        get_job: Callable[[str], Job],
        clock: Callable[[], datetime],
    ) -> None:
        self._claims = claims
        self._get_job = get_job
        self._clock = clock

    def start(self, caller: str, key: str, fingerprint: str, start: Callable[[], Job]) -> Job:
        deadline = time.monotonic() + STARTING_SECONDS
        while time.monotonic() < deadline:
            claim = self._claims.claim(caller, key, fingerprint, self._clock())
            if claim.fingerprint != fingerprint:
                raise Unprocessable(
                    "Idempotency-Key reused with another request",
                    "a key names one request (caller, method, path with query, body)",
                )
            if claim.mine:
                return self._first(caller, key, start)
            if claim.job_id is not None:
                job = self._get_job(claim.job_id)
                if job.status not in (JobStatus.FAILED, JobStatus.CANCELLED):
                    return job
                if self._claims.assign(caller, key, None, claim.job_id):  # the retry is ours
                    return self._first(caller, key, start)
            time.sleep(POLL_SECONDS)
        raise Busy("the first request with this Idempotency-Key is still starting", "", 1)

    def _first(self, caller: str, key: str, start: Callable[[], Job]) -> Job:
        try:
            job = start()
        except BaseException:
            self._claims.release(caller, key)
            raise
        self._claims.assign(caller, key, job.id, None)
        return job
