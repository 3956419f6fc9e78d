from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest

from protocol import SensorKind
from simulator import CoverModel, PoleModel, PressureModel, build_city, model_for
from simulator.devices import LOW_BATTERY_V, Battery, SpikeSchedule
from simulator.physics import GAS_COVER_CLASSES, WATER_ALARM_M
from simulator.weather import RainEvent, Weather

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
    assert all(0.25 <= s["water_level_m"] < WATER_ALARM_M for s in samples)
    assert all(3.4 <= s["battery_v"] <= 3.75 for s in samples)


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
    for sensor_id in (f"st-410105-001.cover-{n:02d}" for n in range(20)):
        model = CoverModel(7, sensor_id)
        runs = _runs_above([model.sample(t)["tilt_deg"] for t in six_hours], 15.0)
        spikes += len(runs)
        assert max(runs, default=0) <= 2  # at 1 Hz: two samples span 1 s
    assert spikes > 20 * 10


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


def _rain(seed: int = 7) -> tuple[Weather, list[RainEvent]]:
    weather = Weather(seed)
    return weather, weather.rain_events(T0, T0 + timedelta(days=60))


def test_the_weather_is_a_function_of_the_seed_and_time() -> None:
    _, events = _rain()
    assert 5 < len(events) < 60  # about three rain days in ten
    assert events == Weather(7).rain_events(T0, T0 + timedelta(days=60))
    assert events != Weather(8).rain_events(T0, T0 + timedelta(days=60))
    late = Weather(7)
    late.runoff("410105", (T0 + timedelta(days=30)).timestamp(), 600.0)
    assert late.rain_events(T0, T0 + timedelta(days=60)) == events
    for event in events:
        assert timedelta(minutes=20) <= event.end - event.start <= timedelta(hours=3)


def test_rain_fills_the_wells_then_they_drain() -> None:
    weather, events = _rain()
    shower = max(events, key=lambda e: e.intensity_mm_h)
    storm = CoverModel(7, "c-storm", class_code="0103", district="410105", weather=weather)
    power = CoverModel(7, "c-power", class_code="0105", district="410105", weather=weather)

    def level(model: CoverModel, at: datetime) -> float:
        return model.water_level(at.timestamp())

    before = shower.start - timedelta(minutes=5)
    wet = shower.end
    dry = shower.end + timedelta(hours=6)
    assert level(storm, wet) > level(storm, before) + 0.1
    assert level(storm, shower.start + timedelta(minutes=10)) < level(storm, wet)  # rises slowly
    assert abs(level(storm, dry) - level(storm, before)) < 0.1
    assert level(storm, wet) - level(storm, before) > level(power, wet) - level(power, before)


def test_ordinary_rain_never_reaches_the_alarm_level() -> None:
    weather, events = _rain()
    for n in range(30):
        model = CoverModel(7, f"c-{n}", class_code="0103", district="410102", weather=weather)
        for event in events:
            for minutes in range(0, 240, 10):
                t = (event.start + timedelta(minutes=minutes)).timestamp()
                assert model.water_level(t) < WATER_ALARM_M - 0.1


def test_districts_see_the_same_shower_differently() -> None:
    weather, events = _rain()
    t = (events[0].start + timedelta(minutes=40)).timestamp()
    runoffs = {d: weather.runoff(d, t, 1200.0) for d in ("410102", "410103", "410105")}
    assert len(set(runoffs.values())) == 3
    assert all(r > 0 for r in runoffs.values())


def test_only_sewer_and_gas_wells_report_gas() -> None:
    for sensor in build_city(seed=4, stations_per_district=6, covers_per_station=8).sensors:
        if sensor.kind is not SensorKind.COVER:
            continue
        values = model_for(sensor, 4).sample(T0)
        assert ("gas_ppm" in values) == (sensor.class_code in GAS_COVER_CLASSES)
    model = CoverModel(4, "c", class_code="0102")
    gas = [model.sample(t)["gas_ppm"] for t in _times(3600)]
    assert all(0.0 <= g < 50.0 for g in gas)
    assert max(gas) - min(gas) > 1.0


def test_batteries_drain_slowly_each_at_its_own_rate() -> None:
    rates = set()
    for n in range(20):
        battery = Battery(7, f"c-{n}")
        start, year_later = T0.timestamp(), (T0 + timedelta(days=365)).timestamp()
        assert battery.level(year_later) < battery.level(start)
        assert battery.level(start) - battery.level(year_later) < 0.1
        rates.add(battery.drain_v_per_year)
    assert len(rates) == 20


def test_a_low_battery_reads_low() -> None:
    flat = CoverModel(7, "c", low_battery=True)
    assert all(abs(flat.sample(t)["battery_v"] - LOW_BATTERY_V) < 0.05 for t in _times(100))
    model = PressureModel(7, "p")
    model.battery.run_low(T0 + timedelta(seconds=50))
    volts = [model.sample(t)["battery_v"] for t in _times(100)]
    assert min(volts[:50]) > 3.4
    assert max(volts[50:]) < LOW_BATTERY_V + 0.05
    with pytest.raises(ValueError, match="low battery"):
        model.battery.run_low(T0, volts=5.0)


def test_poles_vibrate_with_wind_and_knocks_but_stay_quiet() -> None:
    model = PoleModel(7, "st-410105-001.pole-01")
    vibration = [model.sample(t)["vibration_g"] for t in _times(4 * 3600)]
    assert max(vibration) < 0.5
    assert sum(v > 0.1 for v in vibration) > 0  # a knock now and then


def test_spikes_do_not_depend_on_when_they_are_asked() -> None:
    def schedule() -> SpikeSchedule:
        return SpikeSchedule(
            "7/c/traffic", mean_gap_s=60.0, min_gap_s=2.0, duration_s=(0.3, 1.5), peak=(10.0, 30.0)
        )

    forward, backward = schedule(), schedule()
    start = T0.timestamp()
    times = [start + k * 0.5 for k in range(4 * 7200)]
    assert [forward.at(t) for t in times] == [backward.at(t) for t in reversed(times)][::-1]
    spikes = forward.spikes(start, start + 4 * 3600)
    assert len(spikes) > 100
    gaps = [b.start - a.end for a, b in pairwise(spikes)]
    assert min(gaps) >= 2.0
