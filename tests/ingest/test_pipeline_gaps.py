"""Gaps through the pipeline: noticed from telemetry, asked for on the station's cmd topic,
filled by the re-sent batches (stored once), closed by gap reports and answers; the tracker's
state in the checkpoint."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from ingest.checkpoint import encode_checkpoint, load, save
from ingest.dedup import Deduplicator
from ingest.fakes import MemoryAlerts, MemoryCommands, MemoryDeadLetters, MemorySink
from ingest.gaps import GapPolicy
from ingest.pipeline import IngestPipeline
from protocol import (
    Channel,
    CommandAck,
    ConfigAck,
    GapReport,
    ResendRequest,
    StationTopic,
    decode_command,
    encode,
)
from rules import ClockPolicy, RuleEngine, parse_rules
from tests.factories import T0, batch, birth, tilt

RULES = parse_rules(
    "rules:\n- {id: cover-tilt, title: t, kind: cover, case: {category: component},"
    " when: {field: tilt_deg, above: 15}, hold: 3}"
)
TELEMETRY = str(StationTopic("st-1", Channel.TELEMETRY))
GAPS = str(StationTopic("st-1", Channel.GAPS))
ACK = str(StationTopic("st-1", Channel.ACK))
CMD = str(StationTopic("st-1", Channel.COMMAND))


class Clock:
    def __init__(self) -> None:
        self.now = T0 + timedelta(minutes=1)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def pipeline(clock: Clock) -> IngestPipeline:
    return IngestPipeline(
        engine=RuleEngine(RULES, clock=ClockPolicy(allowed_lateness=0)),
        alerts=MemoryAlerts(),
        dead_letters=MemoryDeadLetters(),
        sinks=[MemorySink()],
        clock=clock,
    )


async def send(pipeline: IngestPipeline, seqs: Iterable[int], boot: int = 1) -> None:
    for seq in seqs:
        payload = encode(batch([tilt(seq, 1)], seq=seq, boot_epoch=boot))
        await pipeline.handle(TELEMETRY, payload)


def stored(pipeline: IngestPipeline) -> list[int]:
    sink = pipeline.sinks[0]
    assert isinstance(sink, MemorySink)
    return sorted(b.seq for b in sink.batches)


def sample(pipeline: IngestPipeline, name: str, **labels: str) -> float:
    return pipeline.metrics.registry.get_sample_value(name, labels) or 0.0


def letters(pipeline: IngestPipeline) -> list[tuple[str, str]]:
    dead = pipeline.dead_letters
    assert isinstance(dead, MemoryDeadLetters)
    return [(topic, reason) for topic, _, reason, _ in dead.letters]


def report(first: int | None, last: int | None, readings: int, marker: int = 1) -> GapReport:
    return GapReport(
        station_id="st-1",
        boot_epoch=1,
        marker_id=marker,
        reason="bytes",
        readings=readings,
        batches=0 if first is None or last is None else last - first + 1,
        first_seq=first,
        last_seq=last,
        sent_at=T0,
    )


async def test_a_gap_is_asked_for_once_due_and_the_resent_batches_are_stored_once(
    pipeline: IngestPipeline, clock: Clock
) -> None:
    await send(pipeline, [*range(40), *range(50, 100)])
    assert sample(pipeline, "citysense_ingest_gap_batches") == 10
    commands = MemoryCommands()
    clock.advance(9)
    assert await pipeline.request_resends(commands) == []
    clock.advance(1)
    (request,) = await pipeline.request_resends(commands)
    assert commands.sent == [request]
    assert (request.station_id, request.first_seq, request.last_seq) == ("st-1", 40, 49)
    assert decode_command(StationTopic.parse(CMD), encode(request)) == request  # valid on cmd
    await send(pipeline, range(40, 50))  # the station re-sends them
    await send(pipeline, range(45, 50))  # and the broker delivers some twice
    assert stored(pipeline) == list(range(100))
    assert sample(pipeline, "citysense_ingest_duplicate_batches_total") == 5
    assert sample(pipeline, "citysense_ingest_gap_batches") == 0
    assert sample(pipeline, "citysense_ingest_gaps_filled_total") == 10
    assert sample(pipeline, "citysense_ingest_resend_requests_total") == 1
    clock.advance(3600)
    assert await pipeline.request_resends(commands) == []


async def test_a_publisher_that_cannot_send_now_is_asked_again_after_the_backoff(
    pipeline: IngestPipeline, clock: Clock
) -> None:
    class Offline(MemoryCommands):
        async def send_command(self, request: ResendRequest) -> None:
            raise ConnectionError("broker down")

    await send(pipeline, [0, 2])
    clock.advance(10)
    assert len(await pipeline.request_resends(Offline())) == 1
    commands = MemoryCommands()
    clock.advance(20)
    await pipeline.request_resends(commands)
    assert [(r.first_seq, r.last_seq) for r in commands.sent] == [(1, 1)]


async def test_nothing_is_asked_for_while_ingest_is_stalled_and_deadlines_move_by_the_stall(
    pipeline: IngestPipeline, clock: Clock
) -> None:
    await send(pipeline, [0, 2])  # 1 missing: due 10 s from now
    commands = MemoryCommands()
    clock.advance(5)
    pipeline.stalled.add("sink")  # the store is down: the broker holds what comes
    await pipeline.request_resends(commands)
    clock.advance(60)
    assert await pipeline.request_resends(commands) == []
    pipeline.stalled.clear()
    assert await pipeline.request_resends(commands) == []  # 5 s of the 10 had passed
    clock.advance(4.9)
    assert await pipeline.request_resends(commands) == []
    clock.advance(0.1)
    assert [(r.first_seq, r.last_seq) for r in await pipeline.request_resends(commands)] == [(1, 1)]


async def test_a_gap_report_closes_the_gap_counts_readings_once_and_shows_per_station(
    pipeline: IngestPipeline, clock: Clock
) -> None:
    await pipeline.handle(str(StationTopic("st-1", Channel.STATE)), encode(birth()))
    await send(pipeline, [0, 1, 10])
    lost = encode(report(2, 5, readings=120))
    for _ in range(3):  # announced until the broker acknowledged it
        await pipeline.handle(GAPS, lost)
    await pipeline.handle(GAPS, encode(report(None, None, readings=7, marker=2)))
    assert pipeline.gaps.open_ranges("st-1") == [(6, 9)]
    assert sample(pipeline, "citysense_edge_lost_readings_total", reason="bytes") == 127
    assert sample(pipeline, "citysense_ingest_gap_reports_total", outcome="repeat") == 2
    assert sample(pipeline, "citysense_ingest_gaps_reported_lost_total") == 4
    (station,) = pipeline.registry.stations()
    assert station.lost_readings == 127
    clock.advance(10)
    commands = MemoryCommands()
    await pipeline.request_resends(commands)
    assert [(r.first_seq, r.last_seq) for r in commands.sent] == [(6, 9)]


async def test_an_answer_is_counted_and_its_unknown_seqs_are_closed(
    pipeline: IngestPipeline, clock: Clock
) -> None:
    await send(pipeline, [0, 10])
    clock.advance(10)
    (request,) = await pipeline.request_resends(MemoryCommands())
    answer = CommandAck(
        station_id="st-1",
        request_id=request.request_id,
        command="resend",
        resent=6,
        pending=1,
        expired=0,
        unknown=2,
        sent_at=T0,
    )
    await pipeline.handle(ACK, encode(answer))
    assert pipeline.gaps.open_ranges("st-1") == [(1, 7)]
    assert sample(pipeline, "citysense_ingest_resend_answers_total", outcome="resent") == 6
    assert sample(pipeline, "citysense_ingest_gaps_unrecoverable_total", reason="unknown") == 2


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        (GAPS, b"{not json", "not_json"),
        (GAPS, json.dumps({"v": 1, "station_id": "st-1"}).encode(), "invalid"),
        (ACK, json.dumps({"v": 2}).encode(), "bad_version"),
        (str(StationTopic("st-2", Channel.ACK)), b"", "not_json"),
        (
            CMD,
            encode(ResendRequest(station_id="st-1", request_id=1, first_seq=0, last_seq=1)),
            "bad_topic",
        ),  # ingest does not read the stations' cmd topics
    ],
)
async def test_bad_gap_reports_and_answers_are_dead_lettered_with_a_reason(
    pipeline: IngestPipeline, topic: str, payload: bytes, reason: str
) -> None:
    await pipeline.handle(topic, payload)
    assert letters(pipeline) == [(topic, reason)]
    assert pipeline.metrics.rejected_count(reason) == 1
    mismatched = report(None, None, readings=1).model_copy(update={"station_id": "st-2"})
    await pipeline.handle(GAPS, encode(mismatched))
    assert letters(pipeline)[-1] == (GAPS, "station_mismatch")
    assert sample(pipeline, "citysense_edge_lost_readings_total", reason="bytes") == 0


async def test_the_tracker_is_saved_in_the_checkpoint_and_restored(
    pipeline: IngestPipeline, clock: Clock, tmp_path: Path
) -> None:
    await send(pipeline, [0, 1, 5, 9])
    await pipeline.handle(GAPS, encode(report(2, 2, readings=30)))
    clock.advance(10)
    await pipeline.request_resends(MemoryCommands())
    path = tmp_path / "checkpoint.json"
    await save(pipeline, path)
    policy = GapPolicy(resend_after_s=10)
    checkpoint = load(RULES, path, ClockPolicy(allowed_lateness=0), policy)
    restored = checkpoint.gaps
    assert restored.policy is policy
    assert restored.to_dict() == pipeline.gaps.to_dict()
    assert restored.open_ranges("st-1") == [(3, 4), (6, 8)]
    assert restored.lost_readings("st-1") == 30
    assert json.loads(path.read_bytes())["gaps"]["stations"]["st-1"]["ranges"][0][:2] == [3, 4]


def test_a_checkpoint_from_before_the_tracker_restores_an_empty_one(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.json"
    document = json.loads(encode_checkpoint(RuleEngine(RULES), Deduplicator(), None))
    del document["gaps"]
    path.write_text(json.dumps(document))
    checkpoint = load(RULES, path, ClockPolicy())
    assert checkpoint.gaps.open_batches() == 0
    assert not (tmp_path / "checkpoint.json.bad").exists()


async def test_a_stations_answer_to_a_pushed_config_is_counted_not_refused(
    pipeline: IngestPipeline,
) -> None:
    answer = ConfigAck(
        station_id="st-1",
        status="rejected",
        config_version=2,
        offered_version=3,
        reason="no rule cover-x",
        sent_at=T0,
    )
    await pipeline.handle(ACK, encode(answer))
    assert pipeline.metrics.config_answers.labels("rejected")._value.get() == 1
    assert pipeline.metrics.rejected._metrics == {}  # not dead-lettered
