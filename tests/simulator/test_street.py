"""The hard street: loose covers rocked by streams of vehicles, gusts on poles, a compressed
day, exception-only covers, and devices that sleep between the events that matter."""

from __future__ import annotations

import statistics
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from protocol import Reading, SensorKind
from simulator import CoverOpen, build_city
from simulator.fleet import SimulatedStation
from simulator.incidents import PoleFall
from simulator.physics import CoverModel, PoleModel, PressureModel, Street
from simulator.reporting import Reporter, micros, policy_for
from simulator.sampling import Ticks
from simulator.scenario import load_scenario
from simulator.traffic import DayClock, VehicleStreams, traffic

T0 = datetime(2026, 7, 1, 0, 0, tzinfo=UTC)  # 08:00 Beijing time: the morning rush
NIGHT = datetime(2026, 6, 30, 18, 0, tzinfo=UTC)  # 02:00 Beijing time
LIBRARY = Path(__file__).resolve().parents[2] / "scenarios"


def _tilts(model: CoverModel | PoleModel, start: datetime, seconds: int) -> list[float]:
    t0 = start.timestamp()
    return [model.sample_at(t0 + s)["tilt_deg"] for s in range(seconds)]


def _runs_above(values: list[float], threshold: float) -> list[int]:
    runs, current = [], 0
    for value in [*values, -1.0]:
        if value > threshold:
            current += 1
        elif current:
            runs.append(current)
            current = 0
    return runs


def _loose(n: int) -> CoverModel:
    return CoverModel(7, f"st-410105-001.cover-{n:02d}", loose=True)


def test_loose_covers_jump_about_for_several_seconds_at_rush_hour() -> None:
    runs: list[int] = []
    high: list[float] = []
    for n in range(10):
        tilts = _tilts(_loose(n), T0, 1800)
        runs += _runs_above(tilts, 15.0)
        high += [t for t in tilts if t > 15.0]
    assert max(runs) >= 4  # several consecutive 1 s samples above 15°
    assert sum(r >= 3 for r in runs) >= 10
    assert min(high) < 20.0 < 35.0 < max(high)  # the values spread widely
    assert statistics.pstdev(high) > 5.0


def test_a_loose_cover_re_seats_between_vehicles() -> None:
    model = _loose(1)
    assert model.streams is not None
    start = T0.timestamp()
    stream = model.streams.streams(start, start + 3600)[0]
    for kick, following in zip(stream.kicks, stream.kicks[1:], strict=False):
        assert 8.0 <= kick.peak <= 40.0
        assert 0.3 <= kick.end - kick.start <= 1.5
        assert 0.0 < kick.rest <= 3.0
        gap = (following.start + kick.end) / 2
        assert model.sample_at(gap)["tilt_deg"] < 4.5
    assert 20.0 <= stream.end - stream.start <= 120.0


def test_streams_follow_the_rush_hours() -> None:
    def streamed(start: datetime, hours: int) -> float:
        total = 0.0
        for n in range(10):
            streams = _loose(n).streams
            assert streams is not None
            t0 = start.timestamp()
            total += sum(s.end - s.start for s in streams.streams(t0, t0 + hours * 3600))
        return total / (10 * hours * 3600)

    rush, night = streamed(T0 - timedelta(hours=1), 2), streamed(NIGHT, 3)
    assert 0.1 < rush < 0.4
    assert night < rush / 10
    assert traffic(8.0) == 1.0
    assert traffic(18.0) == 1.0
    assert traffic(3.0) < 0.1


def test_tight_covers_are_not_rocked_by_streams() -> None:
    tight = CoverModel(7, "st-410105-001.cover-01")
    assert tight.streams is None
    assert max(_runs_above(_tilts(tight, T0, 3600), 15.0)) <= 2


def test_streams_do_not_depend_on_when_they_are_asked() -> None:
    def schedule() -> VehicleStreams:
        return VehicleStreams("7/c/streams", rush_gap_s=240.0)

    forward, backward = schedule(), schedule()
    times = [T0.timestamp() + k * 0.5 for k in range(4 * 3600)]
    assert [forward.tilt_at(t) for t in times] == [backward.tilt_at(t) for t in reversed(times)][
        ::-1
    ]


def test_an_opened_cover_holds_its_angle_for_minutes_among_rocking() -> None:
    city = build_city(seed=7, stations_per_district=1, covers_per_station=6, districts=["410105"])
    station = SimulatedStation(city.stations[0], 7, street=Street(loose_covers=1.0))
    cover = station.sensors()[0].sensor_id
    station.inject(CoverOpen(cover, T0, timedelta(minutes=5), angle_deg=25.0))
    tilts = [station.read(T0 + timedelta(seconds=s))[0].values["tilt_deg"] for s in range(5 * 60)]
    assert all(abs(t - 25.0) <= 1.5 for t in tilts)


def test_gusts_push_poles_past_the_warn_angle_for_seconds_never_past_2_5() -> None:
    runs: list[int] = []
    peak = 0.0
    for n in range(10):
        tilts = _tilts(PoleModel(7, f"p-{n}", gust_gap_s=240.0), T0, 3600)
        runs += _runs_above(tilts, 1.0)
        peak = max(peak, *tilts)
    assert len(runs) >= 50  # a gust every few minutes at each pole
    assert max(runs) <= 9  # 2-8 s
    assert statistics.median(runs) >= 2
    assert 1.8 < peak < 2.5


def test_calm_poles_stay_below_the_warn_angle_and_a_fall_reaches_tens_of_degrees() -> None:
    calm = PoleModel(7, "p-1")
    assert max(_tilts(calm, T0, 3600)) < 1.0
    fall = PoleFall("p-1", T0, timedelta(minutes=5), angle_deg=40.0)
    fallen = fall.affect("p-1", calm.sample(T0 + timedelta(seconds=10)), T0 + timedelta(seconds=10))
    assert fallen["tilt_deg"] > 30.0
    assert fall.affect("p-1", calm.sample(T0), T0)["vibration_g"] > 2.0


@pytest.mark.parametrize("day_hours", [24, 2])
def test_the_pressure_cycle_is_realistic_on_a_real_or_compressed_day(day_hours: int) -> None:
    midnight = datetime(2026, 6, 30, 16, 0, tzinfo=UTC)  # 00:00 Beijing
    clock = DayClock(day_hours * 3600.0, midnight.timestamp())
    step = day_hours * 3600 / (24 * 60)  # one sample per minute of the (compressed) day
    for n in range(20):
        model = PressureModel(7, f"p-{n}", clock=clock)
        values = [
            model.sample_at(midnight.timestamp() + k * step)["pressure_mpa"] for k in range(24 * 60)
        ]
        night, morning, evening = values[3 * 60], values[8 * 60], values[int(19.5 * 60)]
        assert 0.2 <= night <= 0.45
        assert 0.02 < night - morning < 0.07
        assert 0.02 < night - evening < 0.07
        assert min(values) >= 0.14


def test_a_compressed_day_runs_fast_from_the_real_time_of_day() -> None:
    clock = DayClock(7200.0, T0.timestamp())
    assert clock.hour(T0.timestamp()) == pytest.approx(8.0)
    assert clock.hour(T0.timestamp() + 3600) == pytest.approx(20.0)
    with pytest.raises(ValueError, match="a day lasts"):
        DayClock(0.0)


def test_exception_only_devices_report_on_raise_and_recovery_only() -> None:
    policy = policy_for(SensorKind.COVER, powered=False, mode="exception")
    reporter = Reporter(policy)
    quiet = {"tilt_deg": 0.2, "water_level_m": 0.6, "battery_v": 3.6}
    opened = {**quiet, "tilt_deg": 75.0}
    samples = [(s, opened if 100 <= s < 400 else quiet) for s in range(50_000)]
    sent = [s for s, v in samples if reporter.offer(T0 + timedelta(seconds=s), v)]
    assert sent == [0, 100, 400, 43_600]  # first sample, raise, recovery, 12 h later
    periodic = Reporter(policy_for(SensorKind.COVER, powered=False))
    assert sum(periodic.offer(T0 + timedelta(seconds=s), v) for s, v in samples[:1000]) == 302


def test_a_sleeping_device_reports_what_sampling_every_tick_would() -> None:
    """Skipping quiet ticks leaves the reporting decisions unchanged (tilt alarms, times)."""
    city = build_city(seed=7, stations_per_district=1, covers_per_station=8, districts=["410105"])
    street = Street(loose_covers=0.5, wind="gusty")
    every, sleepy = (SimulatedStation(city.stations[0], 7, street=street) for _ in range(2))
    for station in (every, sleepy):
        station.inject(CoverOpen(station.sensors()[1].sensor_id, T0, timedelta(minutes=4)))
    ticks = Ticks(micros(T0), 1_000_000)
    full = [r for s in range(1800) for r in every.read_due(T0 + timedelta(seconds=s))]
    skipped = [r for _, r in sleepy.reports(ticks, 0, 900)] + [
        r for _, r in sleepy.reports(ticks, 900, 1800)
    ]

    # Which samples cross a threshold only differs where noise decides (within 1° of it).
    assert abs(len(skipped) - len(full)) < 0.03 * len(full)
    assert len(full) > 300
    assert _abnormal(skipped, margin=1.5) <= _abnormal(full)
    assert _abnormal(full, margin=1.5) <= _abnormal(skipped)


def _abnormal(readings: list[Reading], margin: float = 0.0) -> set[tuple[str, datetime]]:
    """The reports of a tilt above the alarm angle (covers 10°, poles 1°) by ``margin``
    (a tenth of it on poles)."""
    limits = {SensorKind.COVER: (10.0, margin), SensorKind.POLE: (1.0, margin / 10)}
    return {
        (r.sensor_id, r.ts)
        for r in readings
        if r.kind in limits and r.values["tilt_deg"] > sum(limits[r.kind])
    }


def test_library_scenarios_declare_the_hard_street() -> None:
    rush = load_scenario(LIBRARY / "rush-hour-covers.yaml")
    assert rush.city.loose_covers > 0
    assert len(rush.incidents) == 3
    covers = rush.city.covers_per_station * rush.city.stations_per_district * 2
    assert covers >= 100
    assert all(i.duration >= timedelta(minutes=3) for i in rush.incidents)
    assert load_scenario(LIBRARY / "wind-poles.yaml").city.wind == "gusty"
    day = load_scenario(LIBRARY / "pressure-day.yaml")
    assert day.city.day_length == day.duration == timedelta(hours=2)
    battery = load_scenario(LIBRARY / "battery-covers.yaml")
    assert battery.city.reporting == {"cover": "exception"}
    assert battery.city.poles_per_station
    creep = load_scenario(LIBRARY / "pole-creep.yaml")
    assert creep.duration >= timedelta(days=2)
    assert creep.edge.tick >= timedelta(seconds=10)


def test_background_has_over_1000_sensor_days_of_every_kind_and_no_incident() -> None:
    scenario = load_scenario(LIBRARY / "background.yaml")
    spec = scenario.city
    per_station = spec.covers_per_station + spec.pressure_per_station + spec.poles_per_station
    sensors = len(spec.districts) * spec.stations_per_district * per_station
    assert sensors * scenario.duration / timedelta(days=1) >= 1000
    assert scenario.duration >= timedelta(days=1)  # a full daily cycle
    assert min(spec.covers_per_station, spec.pressure_per_station, spec.poles_per_station) > 0
    assert spec.loose_covers > 0
    assert spec.wind != "calm"
    assert scenario.incidents == []
    assert scenario.faults == []
