"""Ingest counters, exported in Prometheus text format from a private registry."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from ingest.dedup import Deduplicator
from ingest.gaps import GapTracker
from rules import RuleEngine


class DedupCollector(Collector):
    """Batches too old to be checked for duplicates, read at scrape time."""

    def __init__(self, dedup: Deduplicator) -> None:
        self.dedup = dedup

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        yield CounterMetricFamily(
            "citysense_ingest_unverifiable_batches",
            "Batches older than the de-duplication window: accepted unchecked",
            value=self.dedup.unverifiable,
        )


class GapCollector(Collector):
    """Missing batches, re-send requests and the losses stations report, read at scrape time
    from the gap tracker (its counters survive restarts in the checkpoint)."""

    def __init__(self, gaps: GapTracker) -> None:
        self.gaps = gaps

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        gaps, counts = self.gaps, self.gaps.counts
        yield GaugeMetricFamily(
            "citysense_ingest_gap_batches",
            "Batches missing below the stations' highest seqs (open gaps, all stations)",
            value=gaps.open_batches(),
        )
        per_station = GaugeMetricFamily(
            "citysense_ingest_gaps",
            "Batches missing below the station's highest seq (across boots), per station",
            labels=["station"],
        )
        for station, count in sorted(gaps.open_by_station().items()):
            per_station.add_metric([station], count)
        yield per_station
        yield CounterMetricFamily(
            "citysense_ingest_resend_requests",
            "Re-send requests published on stations' cmd topics",
            value=counts.requests,
        )
        yield CounterMetricFamily(
            "citysense_ingest_gaps_filled",
            "Missing batches that arrived after they were asked for",
            value=counts.filled,
        )
        yield CounterMetricFamily(
            "citysense_ingest_gaps_reported_lost",
            "Missing batches a station's gap report declared given up",
            value=counts.reported_lost,
        )
        yield _labelled(
            "citysense_ingest_gaps_unrecoverable",
            "Missing batches given up, by reason",
            "reason",
            counts.unrecoverable,
        )
        yield _labelled(
            "citysense_ingest_resend_answers",
            "Batches of re-send requests by the station's answer",
            "outcome",
            counts.answers,
        )
        yield _labelled(
            "citysense_edge_lost_readings",
            "Readings edge outboxes gave up unsent (their gap reports), by reason",
            "reason",
            counts.lost_readings,
        )
        yield _labelled(
            "citysense_ingest_gap_reports",
            "Gap reports received: new, or a repeat of one counted already",
            "outcome",
            counts.reports,
        )
        yield _labelled(
            "citysense_ingest_seq_resets",
            "Stations whose batch numbering started again (store_reset) or jumped (jump)",
            "cause",
            counts.resets,
        )


def _labelled(
    name: str, documentation: str, label: str, values: dict[str, int]
) -> CounterMetricFamily:
    family = CounterMetricFamily(name, documentation, labels=[label])
    for key, value in values.items():
        family.add_metric([key], value)
    return family


class EngineCollector(Collector):
    """The rules engine's counters and state size, read at scrape time."""

    def __init__(self, engine: RuleEngine) -> None:
        self.engine = engine
        self.snapshot_bytes = 0

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        stats = self.engine.stats
        readings = CounterMetricFamily(
            "citysense_rules_readings",
            "Readings the rules engine saw, by what it did with them",
            labels=["outcome"],
        )
        for name, value in stats.counters().items():
            readings.add_metric([name], value)
        yield readings
        state = GaugeMetricFamily(
            "citysense_rules_state", "Size of the rules engine's state", labels=["part"]
        )
        for name, value in self.engine.state_counts().items():
            state.add_metric([name], value)
        yield state
        yield GaugeMetricFamily(
            "citysense_rules_snapshot_bytes",
            "Size of the last snapshot of the rules engine's state written to disk",
            value=self.snapshot_bytes,
        )


class IngestMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._engine_collector: EngineCollector | None = None
        self._dedup_collector: DedupCollector | None = None
        self._gap_collector: GapCollector | None = None
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
        self.config_answers = Counter(
            "citysense_ingest_config_answers",
            "Stations' answers to a pushed config, by status",
            ["status"],
            registry=self.registry,
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
        self.stalled = Gauge(
            "citysense_ingest_stalled",
            "1 while ingest waits for a dependency (nothing taken, nothing acknowledged)",
            ["dependency"],
            registry=self.registry,
        )
        self.retries = Counter(
            "citysense_ingest_retries",
            "Transient failures retried, by dependency",
            ["dependency"],
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "citysense_ingest_in_flight",
            "Messages received and not yet acknowledged to the broker",
            registry=self.registry,
        )
        self.acked = Counter(
            "citysense_ingest_acknowledged",
            "Messages acknowledged to the broker (after their unit of work committed)",
            registry=self.registry,
        )
        self.alert_retries = Counter(
            "citysense_ingest_alert_delivery_retries",
            "Failed alert deliveries retried (case store unavailable)",
            registry=self.registry,
        )
        self.checkpoint_failures = Counter(
            "citysense_ingest_checkpoint_failures",
            "Checkpoints not written (disk full, fork refused, encoder failed): the previous one"
            " and the journal still cover everything acknowledged; tried again at the next",
            registry=self.registry,
        )

    def snapshot_written(self, size: int) -> None:
        if self._engine_collector is not None:
            self._engine_collector.snapshot_bytes = size

    def watch_dedup(self, dedup: Deduplicator) -> None:
        """Export ``dedup``'s counters (replacing one watched before)."""
        if self._dedup_collector is not None:
            self.registry.unregister(self._dedup_collector)
        self._dedup_collector = DedupCollector(dedup)
        self.registry.register(self._dedup_collector)

    def watch_gaps(self, gaps: GapTracker) -> None:
        """Export ``gaps``' open gaps and counters (replacing a tracker watched before)."""
        if self._gap_collector is not None:
            self.registry.unregister(self._gap_collector)
        self._gap_collector = GapCollector(gaps)
        self.registry.register(self._gap_collector)

    def watch_engine(self, engine: RuleEngine) -> None:
        """Export ``engine``'s counters and state size (replacing an engine watched before)."""
        if self._engine_collector is not None:
            self.registry.unregister(self._engine_collector)
        self._engine_collector = EngineCollector(engine)
        self.registry.register(self._engine_collector)

    def rejected_count(self, reason: str) -> float:
        value = self.registry.get_sample_value(
            "citysense_ingest_rejected_total", {"reason": reason}
        )
        return value or 0.0

    def render(self) -> bytes:
        return generate_latest(self.registry)
