"""Prometheus metrics at /metrics: counters from events, the rest read at scrape time.

Values come from the backups and their manifests, so they are right after a
restart; each carries a `target` label. Access is open by default, as exporters
are; PGKEEP_METRICS_TOKEN requires a bearer token, PGKEEP_METRICS_ALLOW
restricts client networks.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
from collections.abc import Iterator

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from pgkeep.config import Settings
from pgkeep.core.events import Event
from pgkeep.core.service import BackupService
from pgkeep.errors import AuthError, Forbidden, PgkeepError
from pgkeep.runtime import Runtime
from pgkeep.storage.meter import READS

logger = logging.getLogger(__name__)

router = APIRouter(include_in_schema=False)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _Scrape(Collector):
    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        gauges = {
            name: GaugeMetricFamily(f"pgkeep_{name}", text, labels=["target"])
            for name, text in _GAUGES.items()
        }
        rehearsed: dict[str, dict[int, bool]] = {}
        for target, service in self._runtime.services.items():
            try:  # one target's unreadable store never hides the others' metrics
                values = {**_values(service), "store_readable": 1.0}
                rehearsed[target] = _rehearsals(service)
            except PgkeepError as exc:
                logger.warning("metrics of %s: %s", target, exc.message)
                values = {"store_readable": 0.0}
            for name, value in values.items():
                gauges[name].add_metric([target], value)
        yield from (g for g in gauges.values() if g.samples)
        rehearsals = GaugeMetricFamily(
            "pgkeep_rehearsal_ok",
            "Whether the newest upgrade rehearsal into each major restored (1) or not (0)",
            labels=["target", "major"],
        )
        for target, by_major in rehearsed.items():
            for major, ok in by_major.items():
                rehearsals.add_metric([target, str(major)], 1.0 if ok else 0.0)
        if rehearsals.samples:
            yield rehearsals
        running = sum(not j.status.finished for j in self._runtime.jobs.list())
        yield GaugeMetricFamily("pgkeep_jobs_running", "Jobs queued or running", value=running)
        reads = CounterMetricFamily(
            "pgkeep_store_read_bytes",
            "Bytes read from each target's stores",
            labels=["target", "store"],
        )
        totals = READS.totals()
        for target, service in self._runtime.services.items():
            stores = [("primary", service.catalog)]
            stores += list(service.copier.copies) if service.copier else []
            for store, catalog in stores:
                size = totals.get(catalog.storage.where)
                if size is not None:  # a store's address is never a label: names only
                    reads.add_metric([target, store], size)
        yield reads


_GAUGES = {
    "backups_stored": "Completed backups in storage",
    "storage_used_bytes": "Bytes used by backups",
    "storage_free_bytes": "Free bytes where backups are stored",
    "last_success_timestamp_seconds": "When the newest backup finished",
    "backup_duration_seconds": "Duration of the newest backup",
    "backup_size_bytes": "Size of the newest backup",
    "last_verified_timestamp_seconds": "When a backup last passed verify",
    "store_readable": "1 when the target's primary store could be listed, else 0",
}


def _values(service: BackupService) -> dict[str, float]:
    backups = service.catalog.list()
    manifests = [b.manifest for b in backups if b.manifest is not None and b.signed]
    values: dict[str, float] = {
        "backups_stored": len(backups),
        "storage_used_bytes": sum(b.size_bytes for b in backups),
    }
    free = service.catalog.storage.free_bytes()
    if free is not None:
        values["storage_free_bytes"] = free
    if manifests:
        newest = manifests[0]
        values["last_success_timestamp_seconds"] = newest.finished_at.timestamp()
        values["backup_duration_seconds"] = newest.duration_ms / 1000
        values["backup_size_bytes"] = newest.size_bytes
    verified = [
        m.verification.verified_at.timestamp()
        for m in manifests
        if m.verification and m.verification.verified
    ]
    if verified:
        values["last_verified_timestamp_seconds"] = max(verified)
    return values


def _rehearsals(service: BackupService) -> dict[int, bool]:
    """Per major, how the newest verify that rehearsed went (every server of it ok)."""
    found = [
        b.manifest.verification
        for b in service.catalog.list()
        if b.signed
        and b.manifest
        and b.manifest.verification
        and b.manifest.verification.rehearsals
    ]
    newest = max(found, key=lambda v: v.verified_at, default=None)
    by_major: dict[int, bool] = {}
    for r in newest.rehearsals if newest else ():
        by_major[r.major] = by_major.get(r.major, True) and r.ok
    return by_major


class Metrics:
    def __init__(self, runtime: Runtime, settings: Settings) -> None:
        self.registry = CollectorRegistry()
        self._backups = Counter(
            "pgkeep_backups",
            "Backups attempted, by outcome",
            ["target", "status"],
            registry=self.registry,
        )
        for target in runtime.services:
            for status in ("succeeded", "failed", "cancelled"):
                self._backups.labels(target, status)
        self.registry.register(_Scrape(runtime))
        runtime.events.subscribe(self.on_event)
        self._token = settings.metrics_token.get_secret_value() if settings.metrics_token else None
        self._allow = [ipaddress.ip_network(n, strict=False) for n in settings.metrics_allow]

    def on_event(self, event: Event) -> None:
        if event.action == "create" and event.outcome != "refused":
            self._backups.labels(event.target, event.outcome).inc()

    def check_access(self, request: Request) -> None:
        if self._allow:
            host = request.client.host if request.client else None
            client = ipaddress.ip_address(host) if host else None
            if client is None or not any(client in network for network in self._allow):
                raise Forbidden("metrics are not served to this address")
        if self._token is not None:
            self.check_token(request)

    def check_token(self, request: Request) -> None:
        """AuthError unless the request carries PGKEEP_METRICS_TOKEN (set) or an OWNER token
        as a bearer token (never an API key: keys are narrower than the fleet's metrics)."""
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if (
            self._token is not None
            and scheme.lower() == "bearer"
            and hmac.compare_digest(token.encode(), self._token.encode())
        ):
            return
        if scheme.lower() == "bearer" and token and not token.startswith("pgk_"):
            try:
                request.app.state.verifier.verify(token)
                return
            except AuthError:
                pass
        raise AuthError("metrics need PGKEEP_METRICS_TOKEN or an OWNER token as a bearer token")


@router.get("/metrics")
def metrics(request: Request) -> Response:
    exporter: Metrics = request.app.state.metrics
    exporter.check_access(request)
    return Response(generate_latest(exporter.registry), media_type=CONTENT_TYPE)
