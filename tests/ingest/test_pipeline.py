import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ingest.dedup import Deduplicator
from ingest.fakes import MemoryAlerts, MemoryDeadLetters, MemorySink
from ingest.pipeline import IngestPipeline
from ingest.rules_state import load_engine, save
from protocol import Channel, StationTopic, encode
from rules import ClockPolicy, RuleEngine, parse_rules
from tests.factories import batch, birth, cover_info, tilt

TELEMETRY = str(StationTopic("st-1", Channel.TELEMETRY))
STATE = str(StationTopic("st-1", Channel.STATE))
QUICK_RULES = parse_rules(
    "rules:\n- {id: cover-tilt, title: t, kind: cover, case: {category: component},"
    " when: {field: tilt_deg, above: 15}, hold: 3}"
)


def quick_engine() -> RuleEngine:
    """A cover rule that opens after 3 s, evaluating each batch at once (no lateness)."""
    return RuleEngine(QUICK_RULES, clock=ClockPolicy(allowed_lateness=0))


@pytest.fixture
def pipeline() -> IngestPipeline:
    return IngestPipeline(
        engine=quick_engine(),
        alerts=MemoryAlerts(),
        dead_letters=MemoryDeadLetters(),
        sinks=[MemorySink()],
        clock=lambda: datetime(2026, 7, 1, 8, 1, tzinfo=UTC),
    )


async def fire_message(pipeline: IngestPipeline, topic: str, payload: bytes) -> None:
    await pipeline.handle(topic, payload)


def alerts_of(pipeline: IngestPipeline) -> MemoryAlerts:
    assert isinstance(pipeline.alerts, MemoryAlerts)
    return pipeline.alerts


async def test_incident_becomes_one_alert_with_the_registered_sensor(
    pipeline: IngestPipeline,
) -> None:
    await fire_message(pipeline, STATE, encode(birth(sensors=[cover_info(class_code="0102")])))
    for seq, second in enumerate(range(6)):
        await fire_message(pipeline, TELEMETRY, encode(batch([tilt(second, 70)], seq=seq)))
    (alert, sensor), *rest = alerts_of(pipeline).alerts
    assert rest == []
    assert alert.state == "open"
    assert sensor is not None
    assert sensor.class_code == "0102"


async def test_duplicate_batch_is_counted_and_not_stored_or_evaluated_twice(
    pipeline: IngestPipeline,
) -> None:
    readings = [tilt(s, 70) for s in range(5)]
    for _ in range(3):
        await fire_message(pipeline, TELEMETRY, encode(batch(readings, seq=7)))
    sink = pipeline.sinks[0]
    assert isinstance(sink, MemorySink)
    assert len(sink.batches) == 1
    assert (
        pipeline.metrics.registry.get_sample_value("citysense_ingest_duplicate_batches_total") == 2
    )
    assert len(alerts_of(pipeline).alerts) == 1


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        (TELEMETRY, b"\x00garbage", "not_json"),
        (TELEMETRY, json.dumps({"v": 1, "station_id": "st-1"}).encode(), "invalid"),
        (TELEMETRY, json.dumps({"v": 9}).encode(), "bad_version"),
        (
            str(StationTopic("st-2", Channel.TELEMETRY)),
            encode(batch([tilt(0, 1)])),
            "station_mismatch",
        ),
        ("citysense/v1/other", b"{}", "bad_topic"),
        (STATE, b"{}", "bad_version"),
    ],
)
async def test_malformed_message_is_dead_lettered_with_reason_and_next_one_processed(
    pipeline: IngestPipeline, topic: str, payload: bytes, reason: str
) -> None:
    await fire_message(pipeline, topic, payload)
    await fire_message(pipeline, TELEMETRY, encode(batch([tilt(0, 1)], seq=1)))
    assert pipeline.metrics.rejected_count(reason) == 1
    dead = pipeline.dead_letters
    assert isinstance(dead, MemoryDeadLetters)
    assert [(t, p, r) for t, p, r, _ in dead.letters] == [(topic, payload, reason)]
    assert pipeline.metrics.registry.get_sample_value("citysense_ingest_batches_total") == 1


async def test_unregistered_sensor_is_still_evaluated_and_counted(pipeline: IngestPipeline) -> None:
    for seq in range(5):
        await fire_message(pipeline, TELEMETRY, encode(batch([tilt(seq, 70)], seq=seq)))
    assert [(a.state, s) for a, s in alerts_of(pipeline).alerts] == [("open", None)]
    assert (
        pipeline.metrics.registry.get_sample_value("citysense_ingest_unregistered_readings_total")
        == 5
    )


def test_deduplicator_windows_per_station_and_boot() -> None:
    dedup = Deduplicator(window=4)
    assert dedup.first_time("a", 1, 0)
    assert not dedup.first_time("a", 1, 0)
    assert dedup.first_time("a", 2, 0)  # a new boot restarts the sequence
    assert dedup.first_time("b", 1, 0)
    for seq in range(1, 20):
        assert dedup.first_time("a", 1, seq)
    assert not dedup.first_time("a", 1, 19)
    assert not dedup.first_time("a", 1, 16)
    assert dedup.first_time("a", 1, 2)  # older than the window: cannot tell, accepted
    assert dedup.unverifiable == 1


class FlakyAlerts(MemoryAlerts):
    def __init__(self, failures: int, error: Exception) -> None:
        super().__init__()
        self.failures, self.error = failures, error

    async def handle_alert(self, alert, sensor, detected_at) -> None:  # type: ignore[no-untyped-def]
        if self.failures:
            self.failures -= 1
            raise self.error
        await super().handle_alert(alert, sensor, detected_at)


async def _no_sleep(_: float) -> None:
    return None


async def test_alert_delivery_is_retried_while_the_case_store_is_down() -> None:
    alerts = FlakyAlerts(3, ConnectionError("database down"))
    pipeline = IngestPipeline(
        engine=quick_engine(),
        alerts=alerts,
        dead_letters=MemoryDeadLetters(),
        sleep=_no_sleep,
    )
    await fire_message(pipeline, TELEMETRY, encode(batch([tilt(s, 70) for s in range(5)])))
    assert len(alerts.alerts) == 1
    assert (
        pipeline.metrics.registry.get_sample_value("citysense_ingest_alert_delivery_retries_total")
        == 3
    )


async def test_alert_refused_by_the_center_is_counted_and_dead_lettered() -> None:
    alerts = FlakyAlerts(1, ValueError("unknown class"))
    dead = MemoryDeadLetters()
    pipeline = IngestPipeline(
        engine=quick_engine(), alerts=alerts, dead_letters=dead, sleep=_no_sleep
    )
    await fire_message(pipeline, TELEMETRY, encode(batch([tilt(s, 70) for s in range(5)])))
    assert alerts.alerts == []
    assert [(t, r) for t, _, r, _ in dead.letters] == [("alert", "alert_refused")]
    assert pipeline.metrics.registry.get_sample_value("citysense_ingest_alerts_refused_total") == 1


async def test_engine_counters_and_state_size_are_on_metrics(pipeline: IngestPipeline) -> None:
    stamped_2000 = tilt(0, 80).model_copy(update={"ts": datetime(2000, 1, 1, tzinfo=UTC)})
    await fire_message(pipeline, TELEMETRY, encode(batch([tilt(1, 2), stamped_2000], seq=1)))
    text = pipeline.metrics.render().decode()
    assert 'citysense_rules_readings_total{outcome="clock_reset_flagged"} 1.0' in text
    assert 'citysense_rules_readings_total{outcome="late_skipped"}' in text
    assert 'citysense_rules_state{part="sensors"} 1.0' in text
    assert "citysense_rules_snapshot_bytes 0.0" in text


async def test_snapshots_are_written_atomically_and_counted(
    pipeline: IngestPipeline, tmp_path: Path
) -> None:
    await fire_message(pipeline, TELEMETRY, encode(batch([tilt(1, 80)], seq=1)))
    size = await save(pipeline, tmp_path / "state" / "rules.snapshot")
    assert (tmp_path / "state" / "rules.snapshot").stat().st_size == size
    assert not (tmp_path / "state" / "rules.snapshot.tmp").exists()
    text = pipeline.metrics.render().decode()
    assert f"citysense_rules_snapshot_bytes {float(size)}" in text


def test_a_damaged_snapshot_is_kept_aside_and_the_engine_starts_fresh(tmp_path: Path) -> None:
    path = tmp_path / "rules.snapshot"
    path.write_bytes(b"{half a snapsh")
    engine = load_engine(QUICK_RULES, path, ClockPolicy())
    assert engine.state_counts()["sensors"] == 0
    assert (tmp_path / "rules.snapshot.bad").read_bytes() == b"{half a snapsh"
