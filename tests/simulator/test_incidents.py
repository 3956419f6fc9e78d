from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from protocol import SensorKind
from simulator import (
    CoverOpen,
    Incident,
    SimulatedFleet,
    SimulatedStation,
    build_city,
    schedule_cover_incidents,
)

T0 = datetime(2026, 7, 1, 2, 0, tzinfo=UTC)


def _first_cover(station: SimulatedStation) -> str:
    return next(s.sensor_id for s in station.sensors() if s.kind is SensorKind.COVER)


def test_cover_open_tilts_the_cover_only_inside_its_window() -> None:
    station = build_city().stations[0]
    opened, untouched = SimulatedStation(station, seed=7), SimulatedStation(station, seed=7)
    cover = _first_cover(opened)
    incident = CoverOpen(cover, T0 + timedelta(seconds=30), timedelta(seconds=60), angle_deg=80)
    opened.inject(incident)
    for second in range(150):
        ts = T0 + timedelta(seconds=second)
        inside = 30 <= second < 90
        assert incident.active(ts) == inside
        readings, normal = opened.read(ts), untouched.read(ts)
        for reading, twin in zip(readings, normal, strict=True):
            if inside and reading.sensor_id == cover:
                assert reading.values["tilt_deg"] == pytest.approx(80, abs=1.0)
                assert reading.values["water_level_m"] == twin.values["water_level_m"]
            else:
                assert reading == twin


def test_readings_carry_the_sample_time_in_utc() -> None:
    station = SimulatedStation(build_city().stations[0], seed=7)
    beijing = T0.astimezone(timezone(timedelta(hours=8)))
    readings = station.read(beijing)
    assert [r.sensor_id for r in readings] == [s.sensor_id for s in station.sensors()]
    assert all(r.ts == T0 and r.ts.utcoffset() == timedelta(0) for r in readings)


def test_same_seed_same_readings() -> None:
    city = build_city(seed=21)
    one, other = (SimulatedStation(city.stations[1], city.seed) for _ in range(2))
    times = [T0 + timedelta(seconds=s) for s in range(120)]
    assert [one.read(t) for t in times] == [other.read(t) for t in times]


def test_incident_validation() -> None:
    assert isinstance(CoverOpen("c", T0, timedelta(seconds=1)), Incident)
    with pytest.raises(ValueError, match="positive duration"):
        CoverOpen("c", T0, timedelta(0))
    with pytest.raises(ValueError, match="naive"):
        CoverOpen("c", datetime(2026, 7, 1), timedelta(seconds=1))
    with pytest.raises(ValueError, match="angle"):
        CoverOpen("c", T0, timedelta(seconds=1), angle_deg=0)


def test_an_incident_must_touch_the_station() -> None:
    station = SimulatedStation(build_city().stations[0], seed=7)
    with pytest.raises(ValueError, match="touches no sensor"):
        station.inject(CoverOpen("st-410105-009.cover-01", T0, timedelta(seconds=5)))


def test_schedule_picks_covers_deterministically_every_interval() -> None:
    city = build_city(seed=7)
    every, duration = timedelta(seconds=20), timedelta(seconds=8)
    incidents = list(schedule_cover_incidents(city, 99, T0, every, duration, count=12))
    assert incidents == list(schedule_cover_incidents(city, 99, T0, every, duration, count=12))
    assert incidents != list(schedule_cover_incidents(city, 98, T0, every, duration, count=12))
    assert [i.start for i in incidents] == [T0 + n * every for n in range(12)]
    assert all(city.sensor(i.sensor_id).kind is SensorKind.COVER for i in incidents)
    assert len({i.sensor_id for i in incidents}) > 1


def test_an_endless_schedule_is_lazy() -> None:
    city = build_city()
    endless = schedule_cover_incidents(city, 1, T0, timedelta(seconds=20), timedelta(seconds=5))
    assert len([next(endless) for _ in range(1000)]) == 1000


def test_fleet_routes_incidents_to_the_owning_station() -> None:
    city = build_city()
    fleet = SimulatedFleet(city)
    incident = next(
        schedule_cover_incidents(city, 5, T0, timedelta(seconds=20), timedelta(seconds=10))
    )
    fleet.inject(incident)
    owner = city.station_of(incident.sensor_id).station_id
    assert [s.station_id for s in fleet.stations.values() if s.incidents] == [owner]
    readings = {r.sensor_id: r for r in fleet.stations[owner].read(T0)}
    assert readings[incident.sensor_id].values["tilt_deg"] == pytest.approx(75, abs=1.0)
