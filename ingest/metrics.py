"""Ingest counters, exported in Prometheus text format from a private registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, generate_latest


class IngestMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.messages = Counter(
            "citysense_ingest_messages",
            "MQTT messages received",
            ["channel"],
            registry=self.registry,
        )
        self.rejected = Counter(
            "citysense_ingest_rejected",
            "Messages rejected, by reason",
            ["reason"],
            registry=self.registry,
        )
        self.duplicates = Counter(
            "citysense_ingest_duplicate_batches", "Re-sent batches dropped", registry=self.registry
        )
        self.batches = Counter(
            "citysense_ingest_batches", "Telemetry batches accepted", registry=self.registry
        )
        self.readings = Counter(
            "citysense_ingest_readings", "Readings accepted", registry=self.registry
        )
        self.unregistered = Counter(
            "citysense_ingest_unregistered_readings",
            "Readings from sensors no birth message announced",
            registry=self.registry,
        )
        self.alerts = Counter(
            "citysense_rules_alerts",
            "Alert transitions",
            ["rule", "state"],
            registry=self.registry,
        )

        self.alerts_refused = Counter(
            "citysense_ingest_alerts_refused",
            "Alerts the center refused (kept as dead letters)",
            registry=self.registry,
        )
        self.alert_retries = Counter(
            "citysense_ingest_alert_delivery_retries",
            "Failed alert deliveries retried (case store unavailable)",
            registry=self.registry,
        )

    def rejected_count(self, reason: str) -> float:
        value = self.registry.get_sample_value(
            "citysense_ingest_rejected_total", {"reason": reason}
        )
        return value or 0.0

    def render(self) -> bytes:
        return generate_latest(self.registry)
