"""The center's counters as a Prometheus collector, read from the live service at scrape time."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from center.service import CaseService


class CaseCollector(Collector):
    def __init__(self, service: CaseService) -> None:
        self.service = service

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        alerts = CounterMetricFamily(
            "citysense_center_alerts",
            "Alerts handled by the center, by outcome",
            labels=["outcome"],
        )
        for outcome, count in asdict(self.service.stats).items():
            alerts.add_metric([outcome], count)
        yield alerts
        broadcaster = self.service.broadcaster
        yield GaugeMetricFamily(
            "citysense_center_stream_subscribers",
            "Live case-stream subscribers",
            value=broadcaster.subscriber_count,
        )
        yield CounterMetricFamily(
            "citysense_center_stream_lagging_disconnects",
            "Stream subscribers disconnected for falling behind",
            value=broadcaster.lagging_disconnected,
        )
