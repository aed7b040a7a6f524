"""Prometheus metrics at /metrics: counters from events, the rest read at scrape time.

Values come from the backups and their manifests, so they are right after a
restart. Access is open by default, as exporters are; PGKEEP_METRICS_TOKEN
requires a bearer token, PGKEEP_METRICS_ALLOW restricts client networks.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Iterator

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from pgkeep.config import Settings
from pgkeep.core.events import Event
from pgkeep.core.service import BackupService
from pgkeep.errors import AuthError, Forbidden

router = APIRouter(include_in_schema=False)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _Scrape(Collector):
    def __init__(self, service: BackupService) -> None:
        self._service = service

    def collect(self) -> Iterator[GaugeMetricFamily]:
        backups = self._service.list()
        manifests = [b.manifest for b in backups if b.manifest is not None]
        newest = manifests[0] if manifests else None
        verified = [
            m.verification.verified_at.timestamp()
            for m in manifests
            if m.verification and m.verification.verified
        ]
        free = self._service.storage_free_bytes()
        yield _gauge("backups_stored", "Completed backups in storage", len(backups))
        yield _gauge(
            "storage_used_bytes", "Bytes used by backups", sum(b.size_bytes for b in backups)
        )
        if free is not None:
            yield _gauge("storage_free_bytes", "Free bytes where backups are stored", free)
        yield _gauge(
            "jobs_running",
            "Jobs queued or running",
            sum(not j.status.finished for j in self._service.jobs.list()),
        )
        if newest is not None:
            yield _gauge(
                "last_success_timestamp_seconds",
                "When the newest backup finished",
                newest.finished_at.timestamp(),
            )
            yield _gauge(
                "backup_duration_seconds",
                "Duration of the newest backup",
                newest.duration_ms / 1000,
            )
            yield _gauge("backup_size_bytes", "Size of the newest backup", newest.size_bytes)
        if verified:
            yield _gauge(
                "last_verified_timestamp_seconds", "When a backup last passed verify", max(verified)
            )


def _gauge(name: str, text: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"pgkeep_{name}", text, value=value)


class Metrics:
    def __init__(self, service: BackupService, settings: Settings) -> None:
        self.registry = CollectorRegistry()
        self._backups = Counter(
            "pgkeep_backups", "Backups attempted, by outcome", ["status"], registry=self.registry
        )
        for status in ("succeeded", "failed", "cancelled"):
            self._backups.labels(status)
        self.registry.register(_Scrape(service))
        service.listeners.append(self.on_event)
        self._token = settings.metrics_token.get_secret_value() if settings.metrics_token else None
        self._allow = [ipaddress.ip_network(n, strict=False) for n in settings.metrics_allow]

    def on_event(self, event: Event) -> None:
        if event.kind == "backup":
            self._backups.labels(event.status).inc()

    def check_access(self, request: Request) -> None:
        if self._allow:
            host = request.client.host if request.client else None
            client = ipaddress.ip_address(host) if host else None
            if client is None or not any(client in network for network in self._allow):
                raise Forbidden("metrics are not served to this address")
        if self._token is not None:
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(token, self._token):
                raise AuthError("metrics need PGKEEP_METRICS_TOKEN as a bearer token")


@router.get("/metrics")
def metrics(request: Request) -> Response:
    exporter: Metrics = request.app.state.metrics
    exporter.check_access(request)
    return Response(generate_latest(exporter.registry), media_type=CONTENT_TYPE)
