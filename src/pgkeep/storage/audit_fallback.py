"""The audit trail of instances sharing a control database, kept when it does not answer.

Entries go to the control database's chain (postgres/control/audit_trail.py). When it
does not answer, they go to a local file trail instead (storage/audit.py: fsynced, its
own keyed chain), in PGKEEP_STATE_DIR; the next entry that reaches the control database
first brings every pending local entry into the shared chain, in one transaction, each
marked as kept locally and naming the local entry (`localHash`, so a file joined before
adds nothing again), once their own keyed chain checks out (a file edited in the middle
or planted is set aside, and the gap recorded, never signed into the shared chain; entries
cut off its end are not detected: nothing outside the file anchors its head). An action
is refused only when neither can be written.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime
from typing import Any

from pgkeep.core.audit import Anchor, event_fields, verify
from pgkeep.core.events import Event
from pgkeep.errors import PgkeepError, Unavailable
from pgkeep.postgres.control.audit_trail import PgAuditTrail
from pgkeep.storage.audit import AuditLog

logger = logging.getLogger(__name__)
_CHAIN = ("seq", "prev", "hash", "keyId")


class FallbackTrail:
    """core.audit.Trail: the control database's chain, a local file while it is down."""

    anchor: Anchor | None = None  # the shared rows are the record

    def __init__(self, shared: PgAuditTrail, local: AuditLog) -> None:
        self.signer = shared.signer
        self._shared = shared
        self._local = local
        self._lock = threading.Lock()

    @property
    def where(self) -> str:
        return self._shared.where

    def on_event(self, event: Event) -> None:
        self.append(**event_fields(event))

    def append(self, **fields: Any) -> None:
        with self._lock:
            try:
                self._join_if_readable()
                self._shared.append(**fields)
                return
            except Unavailable as exc:
                refused = exc
            try:
                self._local.append(**fields, keptLocally=True)
            except PgkeepError:
                raise refused from None
            logger.warning(
                "audit entry kept in %s until the control database answers: %s",
                self._local.where,
                refused.message,
            )

    def read(self) -> list[dict[str, Any]]:
        return self._shared.read()

    def page(self, offset: int, limit: int) -> tuple[list[dict[str, Any]], int]:
        return self._shared.page(offset, limit)

    def pending(self) -> list[dict[str, Any]]:
        """Entries kept locally, not yet in the shared chain."""
        if not self._local.path.exists():
            return []
        return [e for e in self._local.read() if "_unreadable" not in e]

    def _join_if_readable(self) -> None:
        try:
            self._join()
        except Unavailable:
            raise
        except PgkeepError as exc:  # the local file cannot be read: its entries wait
            logger.error("audit entries kept locally not joined: %s", exc.message)

    def _join(self) -> None:
        """Bring the local entries into the shared chain (one transaction), then set the
        local file aside: a crash between the two could join them twice, never lose them."""
        entries = self.pending()
        if not entries:
            return
        report = verify(self._local, self.signer, None)
        if not report.intact:  # edited, cut or planted: never signed into the shared chain
            rejected = self._local.path.with_name(
                f"{self._local.path.name}.rejected-{time.time_ns()}"
            )
            self._local.path.replace(rejected)
            logger.error("audit entries kept locally rejected (%s): %s", rejected, report.problem)
            at = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
            self._shared.append(
                at=at,
                who="pgkeep",
                via="audit",
                source="",
                action="audit",
                target="",
                backup=None,
                result="failed",
                error=f"entries kept locally were not joined: {report.problem}"[:500],
                request_id="",
            )
            return
        # Each joined row names the local entry it came from: a file joined before (a copy
        # put back, or one whose setting aside failed) adds nothing the second time.
        joined_before = {e.get("localHash") for e in self._shared.read() if e.get("localHash")}
        rows = [
            {**{k: v for k, v in e.items() if k not in _CHAIN}, "localHash": e["hash"]}
            for e in entries
            if e.get("hash") not in joined_before
        ]
        if rows:
            self._shared.append_all(rows)
        joined = self._local.path.with_name(f"{self._local.path.name}.joined-{time.time_ns()}")
        try:
            self._local.path.replace(joined)
        except OSError as exc:  # joined all the same; the next join skips them
            logger.error("audit entries kept locally joined but not set aside: %s", exc)
        logger.warning("%d audit entries kept locally joined the shared chain", len(rows))
