"""The in-process benchmarks, run tiny: they work and give figures (no timing asserted)."""

from __future__ import annotations

import pytest

from bench.casewrite import measure as measure_case_write
from bench.encoding import ENCODERS, measure_encoders
from bench.ingest import TimedPipeline, measure_decode, measure_pipeline, traffic
from bench.report import BenchError, compared
from bench.suite import FULL, QUICK
from protocol import StationTopic, decode_telemetry


def test_every_encoder_writes_telemetry_that_decodes() -> None:
    topic = StationTopic.parse("citysense/v1/stations/lg-0001/telemetry")
    for make in ENCODERS.values():
        batch = decode_telemetry(topic, make(12)(3, 1_782_900_000_000_000))
        assert (batch.station_id, batch.seq, len(batch.readings)) == ("lg-0001", 3, 12)


def test_encoders_are_compared_with_json_dumps() -> None:
    measured = measure_encoders(batch=10, messages=20)
    assert [m.name for m in measured] == [
        "encode_pydantic",
        "encode_json_dumps",
        "encode_fragments",
    ]
    for m in measured:
        assert m.figures["readings_per_s"] == pytest.approx(m.figures["messages_per_s"] * 10)
        assert [r.baseline for r in m.ratios] == (
            [] if m.name == "encode_json_dumps" else ["encode_json_dumps"]
        )


def test_pipeline_micro_bench_over_200_messages() -> None:
    messages = traffic(stations=5, batch=20, messages=200)
    assert len({topic for topic, _ in messages}) == 5
    decode = measure_decode(messages, 20)
    pipeline = compared(measure_pipeline(messages, 20), decode, ["readings_per_s"])
    assert pipeline.params["messages"] == 200
    assert pipeline.figures["readings_per_s"] == pytest.approx(
        pipeline.figures["messages_per_s"] * 20
    )
    (found,) = pipeline.ratios
    assert found.baseline == "ingest_decode_only"
    assert found.value > 0


async def test_a_pipeline_run_with_rejects_is_refused() -> None:
    pipeline = TimedPipeline()
    await pipeline.handle("citysense/v1/stations/lg-0001/telemetry", b"not json")
    with pytest.raises(BenchError, match="not_json"):
        pipeline.check_accepted(1)


def test_quick_plan_is_smaller_than_the_full_one() -> None:
    assert QUICK.raw_seconds < FULL.raw_seconds
    assert QUICK.e2e_readings < FULL.e2e_readings
    assert QUICK.client_styles == ()
    spec = QUICK.load("127.0.0.1", 1, rate=None, qos=1, total=1000)
    assert (spec.duration, spec.total_readings, spec.rate) == (None, 1000, None)


def test_case_writes_are_timed_on_the_loop_the_thread_and_through_the_async_driver() -> None:
    measured = list(measure_case_write(cases=3, busy_ms=1.0))
    assert [m.name for m in measured] == [
        "case_write_idle_async_driver",
        "case_write_idle_thread",
        "case_write_idle_loop",
        "case_write_busy_async_driver",
        "case_write_busy_thread",
        "case_write_busy_loop",
    ]
    for m in measured:
        assert 0 < m.figures["p50_ms"] <= m.figures["p99_ms"] <= m.figures["max_ms"]
    for m in measured[4:]:
        assert [r.baseline for r in m.ratios] == ["case_write_busy_async_driver"] * 2
    assert [m.params["on_loop"] for m in measured] == [False, False, True] * 2
