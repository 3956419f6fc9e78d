import asyncio
import json
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ingest import checkpoint
from ingest.checkpoint import load, save
from ingest.dead_letters import DeadLetterError
from ingest.dedup import Deduplicator
from ingest.errors import PermanentSinkError
from ingest.fakes import MemoryAlerts, MemoryDeadLetters, MemorySink
from ingest.pipeline import YIELD_EVERY_S, IngestPipeline
from ingest.sinks.recorder import RecorderSink, read_recorded
from protocol import BatchView, Channel, SensorInfo, StationTopic, encode
from rules import Alert, ClockPolicy, RuleEngine, parse_rules
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


def quick_pipeline(sink: MemorySink) -> IngestPipeline:
    """``quick_engine``, in-memory alerts and dead letters, ``sink``, a fixed clock."""
    return IngestPipeline(
        engine=quick_engine(),
        alerts=MemoryAlerts(),
        dead_letters=MemoryDeadLetters(),
        sinks=[sink],
        clock=lambda: datetime(2026, 7, 1, 8, 1, tzinfo=UTC),
    )


@pytest.fixture
def pipeline() -> IngestPipeline:
    return quick_pipeline(MemorySink())


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
    assert [(a.state, reason) for a, reason, _ in dead.alerts] == [("open", "alert_refused")]
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


class HeldSink(MemorySink):
    """A sink whose flush waits until ``release`` is set (a slow VictoriaMetrics)."""

    def __init__(self) -> None:
        super().__init__()
        self.flushing = asyncio.Event()
        self.release = asyncio.Event()

    async def flush(self) -> None:
        self.flushing.set()
        await self.release.wait()


async def test_a_checkpoint_commits_without_holding_messages_back_and_covers_what_it_encoded(
    tmp_path: Path,
) -> None:
    """While a checkpoint's commit waits for a slow sink, messages are handled; the file is
    written only once the journal is durable up to the position it names, and that position
    is where the state it holds ends: a restart replays the message handled meanwhile, and
    nothing the state already has."""
    sink, journal = HeldSink(), RecorderSink(tmp_path / "journal")
    pipeline = quick_pipeline(sink)
    pipeline.journal = journal
    await pipeline.handle(TELEMETRY, encode(batch([tilt(1, 80)], seq=1)))
    path = tmp_path / "state" / "checkpoint"
    saving = asyncio.create_task(save(pipeline, path))
    await asyncio.wait_for(sink.flushing.wait(), 5)
    # the commit waits for the sink; the next message does not wait for the checkpoint
    await asyncio.wait_for(pipeline.handle(TELEMETRY, encode(batch([tilt(2, 80)], seq=2))), 5)
    assert not path.exists()  # not before the journal is durable
    sink.release.set()
    await asyncio.wait_for(saving, 5)
    restored = load(QUICK_RULES, path, ClockPolicy(allowed_lateness=0))
    assert restored.dedup.seen("st-1", 1, 1)
    assert not restored.dedup.seen("st-1", 1, 2)
    await pipeline.commit()
    replayed = [record.payload for record in read_recorded(journal.directory, restored.position)]
    assert [json.loads(payload)["seq"] for payload in replayed] == [2]
    await journal.aclose()


def slow_encoder(monkeypatch: pytest.MonkeyPatch, seconds: float, fail: bool = False) -> None:
    """The checkpoint's encoding takes ``seconds`` (a large fleet), or then fails."""
    encode = checkpoint.encode_checkpoint

    def slow(*args: object, **kwargs: object) -> bytes:
        time.sleep(seconds)
        if fail:
            raise MemoryError("the encoder's child ran out of memory")
        return encode(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(checkpoint, "encode_checkpoint", slow)


async def test_a_checkpoint_is_encoded_by_a_forked_child_while_messages_go_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The state is copied by a fork between two messages; the encoding (made to take 2 s, as
    for a large fleet) runs in the child while the next messages are handled; the file holds
    the state as it was at the fork. Encoded in the process (``fork=False``), the same
    checkpoint holds the next message back for the whole 2 s."""
    pipeline = quick_pipeline(MemorySink())
    await pipeline.handle(TELEMETRY, encode(batch([tilt(1, 80)], seq=1)))
    slow_encoder(monkeypatch, 2.0)
    path = tmp_path / "checkpoint"
    started = time.monotonic()
    saving = asyncio.create_task(save(pipeline, path))
    await asyncio.sleep(0.2)
    await pipeline.handle(TELEMETRY, encode(batch([tilt(2, 80)], seq=2)))
    assert time.monotonic() - started < 1.2  # not held back by the encoding
    assert not saving.done()
    assert not path.exists()
    size = await asyncio.wait_for(saving, 10)
    assert path.stat().st_size == size
    assert list(tmp_path.glob("*.tmp")) == []  # noqa: ASYNC240
    restored = load(QUICK_RULES, path, ClockPolicy(allowed_lateness=0))
    assert restored.dedup.seen("st-1", 1, 1)
    assert not restored.dedup.seen("st-1", 1, 2)  # handled after the fork

    started = time.monotonic()
    in_process = asyncio.create_task(save(pipeline, path, fork=False))
    await asyncio.sleep(0.2)
    await pipeline.handle(TELEMETRY, encode(batch([tilt(3, 80)], seq=3)))
    assert time.monotonic() - started > 1.8  # waited for the encoding
    await in_process


async def test_a_checkpoint_whose_child_fails_or_is_cancelled_leaves_the_last_one_in_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline = quick_pipeline(MemorySink())
    await pipeline.handle(TELEMETRY, encode(batch([tilt(1, 80)], seq=1)))
    path = tmp_path / "checkpoint"
    await save(pipeline, path)
    before = path.read_bytes()
    await pipeline.handle(TELEMETRY, encode(batch([tilt(2, 80)], seq=2)))
    slow_encoder(monkeypatch, 0.1, fail=True)
    with pytest.raises(checkpoint.CheckpointError, match="ended with 1"):
        await save(pipeline, path)
    slow_encoder(monkeypatch, 30.0)
    saving = asyncio.create_task(save(pipeline, path))
    await asyncio.sleep(0.3)
    saving.cancel()  # the node stops: the child is ended, not left encoding
    with pytest.raises(asyncio.CancelledError):
        await saving
    assert path.read_bytes() == before
    assert list(tmp_path.glob("*.tmp")) == []  # noqa: ASYNC240


async def test_a_checkpoint_that_cannot_be_written_is_counted_and_the_node_goes_on(
    tmp_path: Path,
) -> None:
    """A full disk (here: the checkpoint's directory is a file) fails every checkpoint: each
    is logged and counted, and messages are still handled and committed."""
    pipeline = quick_pipeline(MemorySink())
    (tmp_path / "state").write_text("not a directory")
    saving = asyncio.create_task(checkpoint.keep_saved(pipeline, tmp_path / "state" / "cp", 0.05))
    try:
        await asyncio.sleep(0.5)
        assert not saving.done()
        await pipeline.handle(TELEMETRY, encode(batch([tilt(1, 80)], seq=1)))
        await pipeline.commit()
    finally:
        saving.cancel()
    text = pipeline.metrics.render().decode()
    total = "citysense_ingest_checkpoint_failures_total "
    (line,) = [x for x in text.splitlines() if x.startswith(total)]
    failures = float(line.split()[-1])
    assert failures >= 3


def test_a_damaged_checkpoint_is_kept_aside_and_ingest_starts_fresh(tmp_path: Path) -> None:
    path = tmp_path / "rules.snapshot"
    path.write_bytes(b"{half a snapsh")
    checkpoint = load(QUICK_RULES, path, ClockPolicy())
    assert checkpoint.engine.state_counts()["sensors"] == 0
    assert checkpoint.position is None
    assert (tmp_path / "rules.snapshot.bad").read_bytes() == b"{half a snapsh"


async def test_an_alert_failing_in_an_unexpected_way_is_kept_not_retried_forever() -> None:
    alerts = FlakyAlerts(1, OverflowError("date value out of range"))
    dead = MemoryDeadLetters()
    pipeline = IngestPipeline(
        engine=quick_engine(), alerts=alerts, dead_letters=dead, sleep=_no_sleep
    )
    await fire_message(pipeline, TELEMETRY, encode(batch([tilt(s, 70) for s in range(5)])))
    assert [reason for _, reason, _ in dead.alerts] == ["alert_failed"]
    # the next message is processed as usual
    await fire_message(pipeline, TELEMETRY, encode(batch([tilt(9, 1)], seq=1)))
    assert pipeline.metrics.registry.get_sample_value("citysense_ingest_batches_total") == 2


async def test_a_dead_letter_store_that_cannot_write_stalls_instead_of_crashing() -> None:
    dead = MemoryDeadLetters(fail_with=DeadLetterError("disk full"))
    slept: list[float] = []

    async def sleep(delay: float) -> None:
        slept.append(delay)
        if len(slept) == 3:
            dead.fail_with = None  # the operator frees some space

    pipeline = IngestPipeline(
        engine=quick_engine(), alerts=MemoryAlerts(), dead_letters=dead, sleep=sleep
    )
    await fire_message(pipeline, TELEMETRY, b"\x00garbage")
    assert len(slept) == 3
    assert [reason for _, _, reason, _ in dead.letters] == ["not_json"]
    registry = pipeline.metrics.registry
    assert (
        registry.get_sample_value("citysense_ingest_retries_total", {"dependency": "dead_letters"})
        == 3
    )
    assert (
        registry.get_sample_value("citysense_ingest_stalled", {"dependency": "dead_letters"}) == 0
    )


async def test_a_birth_claiming_another_stations_sensor_is_dead_lettered(
    pipeline: IngestPipeline,
) -> None:
    await fire_message(pipeline, STATE, encode(birth(sensors=[cover_info("st-1.cover-01")])))
    other = birth("st-2", sensors=[cover_info("st-1.cover-01")])
    await fire_message(pipeline, str(StationTopic("st-2", Channel.STATE)), encode(other))
    assert (
        pipeline.metrics.rejected_count("foreign_sensor")
        + pipeline.metrics.rejected_count("sensor_claimed")
        == 1
    )
    assert pipeline.registry.owner("st-1.cover-01") == "st-1"


async def test_a_sink_refusing_a_batch_for_good_dead_letters_it_and_rules_still_run() -> None:
    class Refusing(MemorySink):
        async def write_batch(self, batch: BatchView, received_at: datetime) -> None:
            raise PermanentSinkError("victoria", "bad_request", "400: cannot parse")

    dead, alerts = MemoryDeadLetters(), MemoryAlerts()
    pipeline = IngestPipeline(
        engine=quick_engine(), alerts=alerts, dead_letters=dead, sinks=[Refusing()]
    )
    await fire_message(pipeline, TELEMETRY, encode(batch([tilt(s, 70) for s in range(5)])))
    assert [reason for _, _, reason, _ in dead.letters] == ["sink_refused"]
    assert len(alerts.alerts) == 1


async def test_sequence_gaps_are_on_metrics(pipeline: IngestPipeline) -> None:
    for seq in (0, 1, 4):
        await fire_message(pipeline, TELEMETRY, encode(batch([tilt(seq, 1)], seq=seq)))
    text = pipeline.metrics.render().decode()
    assert 'citysense_ingest_gaps{station="st-1"} 2.0' in text


class GatedAlerts(MemoryAlerts):
    """A case store that writes only while the gate is open (a slow or stalled database)."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()

    async def handle_alert(
        self, alert: Alert, sensor: SensorInfo | None, detected_at: datetime
    ) -> None:
        await self.gate.wait()
        await super().handle_alert(alert, sensor, detected_at)


async def test_deferred_alerts_go_on_in_order_while_messages_are_handled_and_commit_waits() -> None:
    alerts = GatedAlerts()
    sink = MemorySink()
    pipeline = IngestPipeline(
        engine=quick_engine(),
        alerts=alerts,
        dead_letters=MemoryDeadLetters(),
        sinks=[sink],
        clock=lambda: datetime(2026, 7, 1, 8, 1, tzinfo=UTC),
    )
    pipeline.defer_alerts = True
    for seq, second in enumerate([0, 4, 5, 9, 10, 14]):  # open, clear, open: three alerts
        value = 70 if second in (0, 4, 10, 14) else 1
        await pipeline.handle(TELEMETRY, encode(batch([tilt(second, value)], seq=seq)))
    assert len(sink.batches) == 6  # handled and stored while the case store waits
    assert alerts.alerts == []
    commit = asyncio.create_task(pipeline.commit())
    await asyncio.sleep(0.05)
    assert not commit.done()  # nothing may be acknowledged before its cases are written
    alerts.gate.set()
    await commit
    assert [a.state for a, _ in alerts.alerts] == ["open", "cleared", "open"]


class BatchAlerts(GatedAlerts):
    """A case store that takes alerts together (``handle_alerts``: one transaction), refusing
    the ones ``refuse`` names, or failing unexpectedly once when ``fail_once`` is set."""

    def __init__(self, refuse: frozenset[str] = frozenset(), fail_once: bool = False) -> None:
        super().__init__()
        self.calls: list[list[str]] = []
        self.refuse, self.fail_once = refuse, fail_once

    async def handle_alerts(
        self, items: list[tuple[Alert, SensorInfo | None, datetime]]
    ) -> list[Exception | None]:
        await self.gate.wait()
        if self.fail_once:
            self.fail_once = False
            raise RuntimeError("a bug in the batch path")
        self.calls.append([alert.state for alert, _, _ in items])
        outcomes: list[Exception | None] = []
        for alert, sensor, _ in items:
            if alert.state in self.refuse:
                outcomes.append(ValueError(f"{alert.state} refused"))
            else:
                self.alerts.append((alert, sensor))
                outcomes.append(None)
        return outcomes


async def _three_alerts_deferred(alerts: MemoryAlerts, dead: MemoryDeadLetters) -> IngestPipeline:
    """A deferring pipeline that raised three alerts (open, cleared, open), the case store
    gated: the first is taken at once, the other two queue up behind it."""
    pipeline = IngestPipeline(
        engine=quick_engine(),
        alerts=alerts,
        dead_letters=dead,
        clock=lambda: datetime(2026, 7, 1, 8, 1, tzinfo=UTC),
        sleep=_no_sleep,
    )
    pipeline.defer_alerts = True
    for seq, second in enumerate([0, 4, 5, 9, 10, 14]):
        value = 70 if second in (0, 4, 10, 14) else 1
        await pipeline.handle(TELEMETRY, encode(batch([tilt(second, value)], seq=seq)))
        await asyncio.sleep(0)  # the delivery task starts on the first alert and waits
    return pipeline


async def test_alerts_that_queue_up_go_to_the_case_store_together_in_order() -> None:
    alerts, dead = BatchAlerts(), MemoryDeadLetters()
    pipeline = await _three_alerts_deferred(alerts, dead)
    alerts.gate.set()
    await pipeline.commit()
    assert alerts.calls == [["open"], ["cleared", "open"]]  # what queued meanwhile: one call
    assert [a.state for a, _ in alerts.alerts] == ["open", "cleared", "open"]
    assert dead.alerts == []


async def test_a_refusal_in_a_batch_dead_letters_that_alert_only() -> None:
    alerts, dead = BatchAlerts(refuse=frozenset({"cleared"})), MemoryDeadLetters()
    pipeline = await _three_alerts_deferred(alerts, dead)
    alerts.gate.set()
    await pipeline.commit()
    assert [a.state for a, _ in alerts.alerts] == ["open", "open"]
    assert [(a.state, reason, detail) for a, reason, detail in dead.alerts] == [
        ("cleared", "alert_refused", "cleared refused")
    ]


async def test_a_batch_failing_unexpectedly_is_handed_on_one_at_a_time() -> None:
    alerts, dead = BatchAlerts(fail_once=True), MemoryDeadLetters()
    pipeline = await _three_alerts_deferred(alerts, dead)
    alerts.gate.set()
    await pipeline.commit()
    assert [a.state for a, _ in alerts.alerts] == ["open", "cleared", "open"]  # none lost
    assert dead.alerts == []


class BrokenAlertLetters(MemoryDeadLetters):
    """A dead-letter store with a bug: keeping an alert raises what nobody expects."""

    def write_alert(self, alert: Alert, reason: str, detail: str, received_at: datetime) -> None:
        raise RuntimeError("a bug in the dead-letter store")


async def test_a_bug_keeping_a_refused_alert_does_not_stop_the_others() -> None:
    alerts = BatchAlerts(refuse=frozenset({"cleared"}))
    pipeline = await _three_alerts_deferred(alerts, BrokenAlertLetters())
    alerts.gate.set()
    await pipeline.commit()
    assert [a.state for a, _ in alerts.alerts] == ["open", "open"]
    rejected = pipeline.metrics.registry.get_sample_value(
        "citysense_ingest_rejected_total", {"reason": "internal_error"}
    )
    assert rejected == 1


class _BusySink(MemorySink):
    """A sink whose every write is 2 ms of work that never suspends (like formatting lines),
    noting how often the event loop's other tasks had run by then."""

    def __init__(self, turns: list[int]) -> None:
        super().__init__()
        self.turns, self.seen = turns, list[int]()

    async def write_batch(self, batch: BatchView, received_at: datetime) -> None:
        done = time.perf_counter() + 0.002
        while time.perf_counter() < done:  # work, not a wait
            pass
        self.seen.append(self.turns[0])
        await super().write_batch(batch, received_at)


async def test_a_long_group_lets_the_event_loop_run_while_it_is_handled() -> None:
    # the commit in flight, the HTTP API and the SSE stream run on the same loop: a group of
    # 500 100-reading messages is ~150 ms of work that awaits nothing that suspends
    turns = [0]
    sink = _BusySink(turns)
    pipeline = quick_pipeline(sink)

    async def other_task() -> None:
        while True:
            await asyncio.sleep(0)
            turns[0] += 1

    group = [(TELEMETRY, encode(batch([tilt(0, 1)], seq=seq))) for seq in range(20)]
    other = asyncio.create_task(other_task())
    await asyncio.sleep(0)
    try:
        await pipeline.handle_messages(group)  # ≥ 40 ms
    finally:
        other.cancel()
    assert len(sink.seen) == 20
    # a turn at least every YIELD_EVERY_S (5 ms) of the ≥ 40 ms: several while it ran
    assert sink.seen[-1] - sink.seen[0] >= 40 * 0.001 / YIELD_EVERY_S - 2
