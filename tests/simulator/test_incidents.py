from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from protocol import Reading, SensorInfo, SensorKind
from simulator import (
    CoverOpen,
    Incident,
    SimulatedFleet,
    SimulatedStation,
    build_city,
    schedule_cover_incidents,
)
from simulator.incidents import (
    INCIDENT_TYPES,
    Flooding,
    GasLeak,
    InjectedIncident,
    PoleCreep,
    PoleFall,
    PressureBurst,
    build_incident,
    suits,
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


CITY = build_city(
    seed=5, stations_per_district=4, covers_per_station=8, poles_per_station=2, districts=["410105"]
)
KINDS = sorted(INCIDENT_TYPES)
EXPECTED = {
    "cover_open": "component",
    "pressure_burst": ("event", "0402"),
    "pole_fall": "component",
    "pole_creep": "component",  # a maintenance case on the pole's class
    "flooding": ("event", "0406"),
    "gas_leak": ("event", "0403"),
}
CHANGED = {
    "cover_open": "tilt_deg",
    "pressure_burst": "pressure_mpa",
    "pole_fall": "tilt_deg",
    "pole_creep": "tilt_deg",
    "flooding": "water_level_m",
    "gas_leak": "gas_ppm",
}


def _target(kind: str) -> SensorInfo:
    return next(s for s in CITY.sensors if suits(kind, s))


def _readings(fleet: SimulatedFleet, ts: datetime) -> dict[str, Reading]:
    return {r.sensor_id: r for station in fleet.stations.values() for r in station.read(ts)}


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_changes_its_sensors_only_inside_its_window(kind: str) -> None:
    sensor = _target(kind)
    start, duration = T0 + timedelta(seconds=60), timedelta(seconds=300)
    incident = build_incident(kind, CITY, sensor.sensor_id, start, duration)
    assert incident.kind == kind
    assert incident.sensor_ids[0] == sensor.sensor_id
    assert incident.end == start + duration
    touched = set(incident.sensor_ids)
    assert all(incident.suits(CITY.sensor(s)) for s in touched)
    injected, normal = SimulatedFleet(CITY), SimulatedFleet(CITY)
    injected.inject(incident)
    field = CHANGED[kind]
    for second in range(0, 600, 5):
        ts = T0 + timedelta(seconds=second)
        inside = incident.active(ts)
        assert inside == (60 <= second < 360)
        readings, twins = _readings(injected, ts), _readings(normal, ts)
        for sensor_id, reading in readings.items():
            twin = twins[sensor_id]
            if not (inside and sensor_id in touched):
                assert reading == twin
            elif second > 60:  # ramps start from the normal value
                assert reading.values[field] != twin.values[field]
                same = set(reading.values) - {field, "vibration_g"}
                assert {k: reading.values[k] for k in same} == {k: twin.values[k] for k in same}


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_names_the_case_it_should_become(kind: str) -> None:
    sensor = _target(kind)
    incident = build_incident(kind, CITY, sensor.sensor_id, T0, timedelta(minutes=5))
    expected = EXPECTED[kind]
    if expected == "component":
        expected = ("component", sensor.class_code)
    assert incident.expected_case(sensor) == expected
    assert isinstance(incident, InjectedIncident)
    maintenance = kind == "pole_creep"
    assert (incident.severity == "maintenance") == maintenance
    assert incident.severity in ("critical", "urgent", "maintenance")


def test_a_burst_is_seen_by_its_neighbours_attenuated() -> None:
    city = build_city(seed=11, stations_per_district=3, covers_per_station=1, districts=["410105"])
    burst_at = next(s for s in city.sensors if s.kind is SensorKind.PRESSURE)
    burst = PressureBurst.near(city, burst_at.sensor_id, T0, timedelta(minutes=10), drop_mpa=0.08)
    assert 2 <= len(burst.neighbours) <= 8
    factors = [factor for _, factor in burst.neighbours]
    assert factors == sorted(factors, reverse=True)
    assert all(0.0 < f < 1.0 for f in factors)
    injected, normal = SimulatedFleet(city), SimulatedFleet(city)
    injected.inject(burst)
    ts = T0 + timedelta(seconds=30)  # after the drop's ramp
    readings, twins = _readings(injected, ts), _readings(normal, ts)

    def drop(sensor_id: str) -> float:
        return twins[sensor_id].values["pressure_mpa"] - readings[sensor_id].values["pressure_mpa"]

    assert drop(burst_at.sensor_id) == pytest.approx(0.08)
    for neighbour, factor in burst.neighbours:
        assert drop(neighbour) == pytest.approx(0.08 * factor)
    assert drop(burst.neighbours[0][0]) > 0.03  # the nearest sees a drop worth an alarm
    quiet = set(readings) - set(burst.sensor_ids)
    assert all(readings[s] == twins[s] for s in quiet)


def test_a_burst_drops_within_seconds_and_stays_down() -> None:
    burst = PressureBurst("p", T0, timedelta(minutes=10), drop_mpa=0.1)
    values = {"pressure_mpa": 0.3}

    def after(seconds: float) -> float:
        return burst.apply(values, T0 + timedelta(seconds=seconds))["pressure_mpa"]

    assert after(0) == pytest.approx(0.3)
    assert 0.2 < after(5) < 0.3
    assert after(10) == after(300) == pytest.approx(0.2)


def test_a_falling_pole_tilts_far_with_a_vibration_spike() -> None:
    fall = PoleFall("l", T0, timedelta(minutes=5), angle_deg=40.0, vibration_g=3.0)
    at_impact = fall.apply({"tilt_deg": 0.3, "vibration_g": 0.01}, T0)
    later = fall.apply({"tilt_deg": 0.3, "vibration_g": 0.01}, T0 + timedelta(seconds=30))
    assert at_impact["vibration_g"] == pytest.approx(3.0)
    assert later["vibration_g"] == pytest.approx(0.01)
    assert later["tilt_deg"] == pytest.approx(40.0, abs=0.5)


def test_a_creeping_pole_leans_a_little_more_each_day() -> None:
    creep = PoleCreep("l", T0, timedelta(days=3), rate_deg_per_day=0.5)
    lean = {"tilt_deg": 0.3}
    day = creep.apply(lean, T0 + timedelta(days=1))["tilt_deg"]
    two = creep.apply(lean, T0 + timedelta(days=2))["tilt_deg"]
    assert day == pytest.approx(0.8)
    assert two == pytest.approx(1.3)


def test_a_flood_fills_the_wells_around_a_low_spot() -> None:
    cover = _target("flooding")
    flood = Flooding.around(CITY, cover.sensor_id, T0, timedelta(minutes=30), level_m=2.5)
    assert len(flood.sensor_ids) > 1
    assert all(CITY.sensor(s).kind is SensorKind.COVER for s in flood.sensor_ids)
    full = flood.apply({"water_level_m": 0.6}, T0 + flood.rise)["water_level_m"]
    half = flood.apply({"water_level_m": 0.6}, T0 + flood.rise / 2)["water_level_m"]
    assert full == pytest.approx(2.5, abs=0.03)
    assert 0.6 < half < full
    district = Flooding.in_district(CITY, "410105", T0, timedelta(hours=1))
    covers = {s.sensor_id for s in CITY.sensors if s.kind is SensorKind.COVER}
    assert set(district.sensor_ids) == covers
    with pytest.raises(ValueError, match="no covers"):
        Flooding.in_district(CITY, "410102", T0, timedelta(hours=1))


def test_gas_builds_up_in_a_sewer_well() -> None:
    leak = GasLeak("c", T0, timedelta(minutes=30), ppm=5_000.0)
    values = {"gas_ppm": 5.0}
    ppm = [leak.apply(values, T0 + timedelta(seconds=s))["gas_ppm"] for s in (0, 60, 600)]
    assert ppm[0] == pytest.approx(5.0)
    assert ppm[0] < ppm[1] < ppm[2]
    assert ppm[2] == pytest.approx(5_000.0, rel=0.05)


def test_build_incident_refuses_what_cannot_happen() -> None:
    storm_cover = next(
        s for s in CITY.sensors if s.kind is SensorKind.COVER and s.class_code == "0103"
    )
    with pytest.raises(ValueError, match="cannot happen"):
        build_incident("gas_leak", CITY, storm_cover.sensor_id, T0, timedelta(minutes=1))
    with pytest.raises(ValueError, match="cannot happen"):
        build_incident("pole_fall", CITY, storm_cover.sensor_id, T0, timedelta(minutes=1))
    with pytest.raises(ValueError, match="unknown incident kind"):
        build_incident("meteor", CITY, storm_cover.sensor_id, T0, timedelta(minutes=1))
    with pytest.raises(ValueError, match="takes no ppm"):
        build_incident("cover_open", CITY, storm_cover.sensor_id, T0, timedelta(1), {"ppm": 1})
    station = SimulatedStation(CITY.station_of(storm_cover.sensor_id), seed=5)
    with pytest.raises(ValueError, match="cannot touch"):
        station.inject(GasLeak(storm_cover.sensor_id, T0, timedelta(minutes=1)))


def test_build_incident_passes_the_scenario_parameters() -> None:
    cover = _target("cover_open")
    opened = build_incident(
        "cover_open", CITY, cover.sensor_id, T0, timedelta(1), {"angle_deg": 30}
    )
    assert opened == CoverOpen(cover.sensor_id, T0, timedelta(1), angle_deg=30.0)
    pressure = _target("pressure_burst")
    lonely = build_incident(
        "pressure_burst", CITY, pressure.sensor_id, T0, timedelta(1), {"radius_m": 1.0}
    )
    assert lonely.sensor_ids == (pressure.sensor_id,)


def test_the_fleet_routes_a_burst_to_every_station_that_sees_it() -> None:
    city = build_city(seed=11, stations_per_district=3, covers_per_station=1, districts=["410105"])
    fleet = SimulatedFleet(city)
    pressure = [s for s in city.sensors if s.kind is SensorKind.PRESSURE]
    burst = max(
        (PressureBurst.near(city, p.sensor_id, T0, timedelta(minutes=5)) for p in pressure),
        key=lambda b: len({city.station_of(s).station_id for s in b.sensor_ids}),
    )
    owners = {city.station_of(s).station_id for s in burst.sensor_ids}
    fleet.inject(burst)
    assert {sid for sid, st in fleet.stations.items() if st.incidents} == owners
    with pytest.raises(ValueError, match="not in the city"):
        fleet.inject(CoverOpen("st-410105-099.cover-01", T0, timedelta(minutes=1)))
