"""The engine benchmark, run tiny: it works and gives figures (no timing asserted)."""

from __future__ import annotations

from bench.engine import Traffic, fleet_batches, measure_state, measure_throughput, traffic
from bench.suite import FULL, QUICK


def test_throughput_compares_the_batched_path_with_the_plain_loop() -> None:
    measured = list(measure_throughput(Traffic(stations=4, steps=6, incidents=0.1), chunk=5))
    assert [m.name for m in measured] == [
        "engine_plain",
        "engine_batched_columns",
        "engine_batched_readings",
        "engine_columns_from_readings",
        "engine_plain_steady",
        "engine_batched_columns_steady",
    ]
    assert measured[0].figures["readings"] == 4 * 49 * 6
    for m in measured[1:4]:
        (ratio,) = m.ratios
        assert (ratio.baseline, ratio.figure) == ("engine_plain", "readings_per_s")
        assert ratio.value > 0
    steady = measured[5]
    assert steady.figures["readings"] == (4 * 6 - 10) * 49  # whole chunks over the first 2 steps
    assert steady.ratios[0].baseline == "engine_plain_steady"


def test_state_is_measured_per_sensor() -> None:
    found = measure_state(120)
    assert found.params["sensors"] == 120
    assert 0 < found.figures["bytes_per_sensor"] < 100_000
    assert found.figures["snapshot_bytes_per_sensor"] > 20
    loggers = sum(r.kind.value == "pressure" for _, rs, _ in fleet_batches(120) for r in rs)
    assert found.figures["tracks"] == loggers  # a baseline each; covers and poles at rest: none
    assert found.figures["batched_owned_sensors"] == 120  # the screen follows every one
    assert found.figures["batched_bytes_per_sensor"] > found.figures["bytes_per_sensor"]


def test_fleet_and_traffic_have_the_load_generators_mix() -> None:
    kinds = [r.kind.value for _, rs, _ in fleet_batches(98, per_station=49) for r in rs]
    assert (kinds.count("cover"), kinds.count("pressure"), kinds.count("pole")) == (56, 14, 28)
    assert len(traffic(Traffic(stations=2, steps=3))) == 6


def test_quick_plan_measures_a_smaller_engine_run() -> None:
    assert QUICK.state_sensors < FULL.state_sensors == 1_000_000
    assert QUICK.engine_steps <= FULL.engine_steps
