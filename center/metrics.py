"""The center's counters as Prometheus collectors, read from the live service (and the
delivery relays) at scrape time."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import asdict

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from center.delivery.relay import Relay
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
        yield CounterMetricFamily(
            "citysense_center_case_writes_locked_out",
            "Case-store writes that found SQLite's lock held by another process and waited"
            " for it on the writer thread instead of the event loop",
            value=self.service.store.writes_locked_out,
        )
        yield CounterMetricFamily(
            "citysense_center_escalations",
            "Dispatched urgent/critical cases escalated: not taken on in time",
            value=self.service.escalated,
        )


class DeliveryCollector(Collector):
    """Per subscriber (``webhook:<name>``, ``mqtt:case-events``): what was delivered, what
    failed, how far behind it is, and whether it stopped on a refusal."""

    def __init__(self, relays: Sequence[Relay]) -> None:
        self.relays = relays

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        delivered = CounterMetricFamily(
            "citysense_center_delivery_delivered",
            "Case events the subscriber confirmed",
            labels=["subscriber"],
        )
        failed = CounterMetricFamily(
            "citysense_center_delivery_failed_attempts",
            "Delivery attempts that failed, by cause (unreachable, timeout, http_<status>...)",
            labels=["subscriber", "cause"],
        )
        lag = GaugeMetricFamily(
            "citysense_center_delivery_lag_events",
            "Case events not yet delivered to the subscriber",
            labels=["subscriber"],
        )
        cursor = GaugeMetricFamily(
            "citysense_center_delivery_cursor",
            "Id of the last case event the subscriber confirmed",
            labels=["subscriber"],
        )
        saved = GaugeMetricFamily(
            "citysense_center_delivery_cursor_saved",
            "Id of the last confirmed case event written to the database (a restart resumes after"
            " it)",
            labels=["subscriber"],
        )
        stopped = GaugeMetricFamily(
            "citysense_center_delivery_stopped",
            "1 when the subscriber refused an event for good and delivery to it stopped",
            labels=["subscriber"],
        )
        standby = GaugeMetricFamily(
            "citysense_center_delivery_standby",
            "1 when another node holds the subscriber's delivery lease and this one stands by",
            labels=["subscriber"],
        )
        for relay in self.relays:
            status = relay.status
            delivered.add_metric([relay.name], status.delivered)
            for cause, count in sorted(status.failed.items()):
                failed.add_metric([relay.name, cause], count)
            lag.add_metric([relay.name], status.lag)
            cursor.add_metric([relay.name], status.cursor)
            saved.add_metric([relay.name], status.saved)
            stopped.add_metric([relay.name], 1 if status.state == "stopped" else 0)
            standby.add_metric([relay.name], 1 if status.state == "standby" else 0)
        yield from (delivered, failed, lag, cursor, saved, stopped, standby)
