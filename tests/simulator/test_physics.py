from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from simulator import CoverModel, PoleModel, PressureModel, build_city, model_for

T0 = datetime(2026, 7, 1, 0, 0, tzinfo=UTC)  # 08:00 Beijing time


def _times(count: int, step_s: float = 1.0) -> list[datetime]:
    return [T0 + timedelta(seconds=i * step_s) for i in range(count)]


def test_same_seed_and_sensor_give_the_same_samples() -> None:
    for sensor in build_city().stations[0].sensors:
        one, other = model_for(sensor, 7), model_for(sensor, 7)
        assert [one.sample(t) for t in _times(300)] == [other.sample(t) for t in _times(300)]


def test_different_seeds_or_sensors_give_different_samples() -> None:
    base = [CoverModel(7, "a").sample(t) for t in _times(10)]
    assert base != [CoverModel(8, "a").sample(t) for t in _times(10)]
    assert base != [CoverModel(7, "b").sample(t) for t in _times(10)]


@pytest.mark.parametrize(
    ("model", "names"),
    [
        (CoverModel(1, "c"), {"tilt_deg", "water_level_m", "battery_v"}),
        (PressureModel(1, "p"), {"pressure_mpa", "battery_v"}),
        (PoleModel(1, "l"), {"tilt_deg", "vibration_g"}),
    ],
)
def test_samples_are_finite_and_named(
    model: CoverModel | PressureModel | PoleModel, names: set[str]
) -> None:
    for t in _times(500, 7.3):
        values = model.sample(t)
        assert set(values) == names
        assert all(math.isfinite(v) for v in values.values())


def test_naive_timestamps_are_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        CoverModel(1, "c").sample(datetime(2026, 7, 1))


def test_cover_at_rest_reads_near_level() -> None:
    model = CoverModel(3, "c")
    samples = [model.sample(t) for t in _times(3600)]
    quiet = sorted(s["tilt_deg"] for s in samples)[: len(samples) * 9 // 10]
    assert max(quiet) < 1.5
    assert all(0.25 <= s["water_level_m"] <= 1.1 for s in samples)
    assert all(3.45 <= s["battery_v"] <= 3.75 for s in samples)


def _runs_above(values: list[float], threshold: float) -> list[int]:
    runs, current = [], 0
    for value in values:
        if value > threshold:
            current += 1
        elif current:
            runs.append(current)
            current = 0
    return [*runs, current] if current else runs


def test_rocking_spikes_happen_but_never_last_two_seconds() -> None:
    """Vehicles rock covers past 15°, but never long enough for a 2-3 s sustain rule."""
    six_hours = _times(6 * 3600)
    spikes = 0
    for sensor_id in (f"st-410105-001.cover-{n:02d}" for n in range(40)):
        model = CoverModel(7, sensor_id)
        runs = _runs_above([model.sample(t)["tilt_deg"] for t in six_hours], 15.0)
        spikes += len(runs)
        assert max(runs, default=0) <= 2  # at 1 Hz: two samples span 1 s
    assert spikes > 40 * 10


def test_rocking_spikes_are_short_in_continuous_time() -> None:
    model = CoverModel(7, "st-410105-001.cover-01")
    tenth_seconds = _times(2 * 3600 * 10, 0.1)
    runs = _runs_above([model.sample(t)["tilt_deg"] for t in tenth_seconds], 15.0)
    assert runs
    assert max(runs) <= 15  # 15 samples at 10 Hz span 1.4 s


def test_rocking_schedule_does_not_depend_on_the_sample_rate() -> None:
    slow, fast = CoverModel(7, "c"), CoverModel(7, "c")
    for t in _times(3600):
        quarters = [fast.sample(t + timedelta(seconds=k / 4)) for k in range(4)]
        assert (slow.sample(t)["tilt_deg"] > 5) == (quarters[0]["tilt_deg"] > 5)


def test_pressure_is_lower_at_the_demand_peaks() -> None:
    model = PressureModel(7, "st-410105-001.pressure-01")
    by_hour: dict[int, list[float]] = {}
    for t in _times(24 * 60, 60.0):
        beijing_hour = (t.hour + 8) % 24
        by_hour.setdefault(beijing_hour, []).append(model.sample(t)["pressure_mpa"])

    def mean(hours: range) -> float:
        values = [v for h in hours for v in by_hour[h]]
        return sum(values) / len(values)

    night, morning, evening = mean(range(1, 5)), mean(range(7, 9)), mean(range(18, 21))
    assert morning < night - 0.02
    assert evening < night - 0.02
    assert all(0.14 <= v <= 0.45 for values in by_hour.values() for v in values)


def test_pole_sways_around_a_small_lean() -> None:
    model = PoleModel(7, "st-410105-001.pole-01")
    tilts = [model.sample(t)["tilt_deg"] for t in _times(3600)]
    assert max(tilts) < 1.0
    assert 0.1 < sum(tilts) / len(tilts) < 0.6
    assert max(tilts) - min(tilts) > 0.05
