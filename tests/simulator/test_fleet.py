from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from protocol import Reading, SensorKind
from simulator.city import build_city, city_of_size
from simulator.devices import LOW_BATTERY_V
from simulator.fleet import SimulatedFleet, SimulatedStation
from simulator.incidents import CoverOpen, PressureBurst
from simulator.reporting import ReportPolicy

T0 = datetime(2026, 7, 1, 2, 0, tzinfo=UTC)
CITY = build_city(seed=7, stations_per_district=2, covers_per_station=8, districts=["410105"])


def _due(station: SimulatedStation, seconds: int) -> list[Reading]:
    return [r for s in range(seconds) for r in station.read_due(T0 + timedelta(seconds=s))]


def test_read_samples_every_sensor_read_due_only_what_devices_send() -> None:
    station = SimulatedStation(CITY.stations[0], CITY.seed)
    assert [r.sensor_id for r in station.read(T0)] == [s.sensor_id for s in station.sensors()]
    first = station.read_due(T0)
    assert [r.sensor_id for r in first] == [s.sensor_id for s in station.sensors()]
    later = station.read_due(T0 + timedelta(seconds=1))
    assert len(later) < len(first)


def test_an_hour_of_traffic_is_heartbeats_and_rocking_alarms() -> None:
    station = SimulatedStation(CITY.stations[0], CITY.seed)
    readings = _due(station, 3600)
    by_sensor = Counter(r.sensor_id for r in readings)
    for sensor in station.sensors():
        count = by_sensor[sensor.sensor_id]
        if sensor.kind is SensorKind.POLE:  # mains-powered: every 5 s, every 1 s in a gust
            assert 720 <= count < 800
        elif sensor.kind is SensorKind.PRESSURE:  # a logger: every 15 min, no alarm
            assert count == 4
        elif station.street.loose(CITY.seed, sensor.sensor_id):  # rocked by vehicle streams
            assert 1 <= count < 3600
        else:  # a tight cover: the first report, then only rocking alarms and their recoveries
            assert 1 <= count < 200
    covers = [r for r in readings if r.kind is SensorKind.COVER]
    assert sum(r.values["tilt_deg"] > 10.0 for r in covers) > 10


def test_an_open_cover_reports_every_second_and_once_on_recovery() -> None:
    station = SimulatedStation(CITY.stations[0], CITY.seed)
    cover = next(s.sensor_id for s in station.sensors() if s.kind is SensorKind.COVER)
    station.inject(CoverOpen(cover, T0 + timedelta(seconds=100), timedelta(seconds=30)))
    reports = [r for r in _due(station, 300) if r.sensor_id == cover]
    open_times = [r.ts for r in reports if r.values["tilt_deg"] > 60]
    assert open_times == [T0 + timedelta(seconds=s) for s in range(100, 130)]
    after = [r for r in reports if r.ts >= T0 + timedelta(seconds=130)]
    assert after[0].ts == T0 + timedelta(seconds=130)
    assert after[0].values["tilt_deg"] < 10


def test_a_burst_is_reported_by_the_burst_sensor_and_near_neighbours() -> None:
    fleet = SimulatedFleet(CITY)
    burst_at = next(s for s in CITY.sensors if s.kind is SensorKind.PRESSURE)
    burst = PressureBurst.near(
        CITY, burst_at.sensor_id, T0 + timedelta(minutes=5), timedelta(minutes=10)
    )
    fleet.inject(burst)
    reports: Counter[str] = Counter()
    for s in range(0, 1200, 5):
        for station in fleet.stations.values():
            reports.update(r.sensor_id for r in station.read_due(T0 + timedelta(seconds=s)))
    assert reports[burst_at.sensor_id] >= 120  # every 5 s for 10 minutes
    nearest, factor = burst.neighbours[0]
    assert factor * burst.drop_mpa > 0.03
    assert reports[nearest] >= 120
    quiet = [
        s.sensor_id
        for s in CITY.sensors
        if s.kind is SensorKind.PRESSURE and s.sensor_id not in burst.sensor_ids
    ]
    assert all(reports[s] <= 2 for s in quiet)


def test_same_seed_same_traffic() -> None:
    one, other = (SimulatedStation(CITY.stations[1], CITY.seed) for _ in range(2))
    assert _due(one, 600) == _due(other, 600)


def test_policies_can_be_overridden_per_kind() -> None:
    chatty = ReportPolicy(heartbeat=timedelta(seconds=1), alarm_interval=timedelta(seconds=1))
    station = SimulatedStation(CITY.stations[0], CITY.seed, policies={SensorKind.COVER: chatty})
    covers = sum(s.kind is SensorKind.COVER for s in station.sensors())
    readings = _due(station, 10)
    assert sum(r.kind is SensorKind.COVER for r in readings) == 10 * covers


def test_a_battery_can_be_run_low_from_a_moment_on() -> None:
    fleet = SimulatedFleet(CITY)
    cover = next(s.sensor_id for s in CITY.sensors if s.kind is SensorKind.COVER)
    fleet.set_low_battery(cover, since=T0 + timedelta(seconds=10))
    station = fleet.stations[CITY.station_of(cover).station_id]

    def battery(second: int) -> float:
        readings = station.read(T0 + timedelta(seconds=second))
        return next(r.values["battery_v"] for r in readings if r.sensor_id == cover)

    assert battery(5) > 3.4
    assert battery(15) == pytest.approx(LOW_BATTERY_V, abs=0.05)
    pole = next(s.sensor_id for s in CITY.sensors if s.kind is SensorKind.POLE)
    with pytest.raises(ValueError, match="no battery"):
        fleet.set_low_battery(pole, since=T0)


def test_a_large_fleet_builds_its_models_only_when_read() -> None:
    city = city_of_size(10_000, seed=2)
    fleet = SimulatedFleet(city)
    assert len(fleet.stations) == len(city.stations)
    station = next(iter(fleet.stations.values()))
    assert len(station.read(T0)) == station.station.sensor_count
    assert sum(len(s._devices) for s in fleet.stations.values()) == station.station.sensor_count
