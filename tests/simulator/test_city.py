from __future__ import annotations

import re
from collections import Counter

import pytest

from protocol import SensorInfo, SensorKind, StationTopic
from protocol.gbt30428 import COVER_CLASSES, POLE_CLASSES
from protocol.topics import Channel
from simulator import ZHENGZHOU_DISTRICTS
from simulator.city import City, build_city, city_of_size
from simulator.geo import distance_m, grid_code
from simulator.layout import SENSOR_SPREAD_M


@pytest.fixture(scope="module")
def city_10k() -> City:
    return city_of_size(10_000, seed=3)


def test_same_seed_builds_the_same_city() -> None:
    one, other = build_city(seed=11), build_city(seed=11)
    assert one == other
    assert list(one.sensors) == list(other.sensors)


def test_different_seeds_build_different_cities() -> None:
    one, other = build_city(seed=11), build_city(seed=12)
    assert [s.station_id for s in one.stations] == [s.station_id for s in other.stations]
    assert list(one.sensors) != list(other.sensors)


def test_default_city_has_the_requested_shape() -> None:
    city = build_city(stations_per_district=3, covers_per_station=4, districts=["410105", "410108"])
    assert [d.code for d in city.districts] == ["410105", "410108"]
    assert len(city.stations) == 6
    for station in city.stations:
        kinds = [s.kind for s in station.sensors]
        assert kinds.count(SensorKind.COVER) == 4
        assert kinds.count(SensorKind.PRESSURE) == 3
        assert kinds.count(SensorKind.POLE) == 1
        assert station.sensor_count == len(station.sensors) == 8
    assert city.sensor_count == 48


def test_ids_and_codes_follow_the_standards() -> None:
    city = build_city(seed=3, stations_per_district=4, covers_per_station=6)
    component_ids = [s.component_id for s in city.sensors]
    assert len(set(component_ids)) == len(component_ids)
    for station in city.stations:
        county = station.district_code
        assert re.fullmatch(rf"st-{county}-\d{{3,5}}", station.station_id)
        StationTopic(station.station_id, Channel.TELEMETRY)  # a valid topic level
        for sensor in station.sensors:
            assert sensor.sensor_id.startswith(f"{station.station_id}.{sensor.kind.value}-")
            assert re.fullmatch(r"\d{16}", sensor.component_id)
            assert sensor.component_id[:6] == county
            assert sensor.component_id[6:10] == sensor.class_code
            assert re.fullmatch(r"\d{14}", sensor.grid_code)
            assert sensor.grid_code[:6] == county
            assert SensorInfo.model_validate(sensor.model_dump()) == sensor
            assert sensor.address.startswith(f"郑州市{ZHENGZHOU_DISTRICTS[county].name}")
            assert station.road in sensor.address


def test_component_ids_are_unique_in_a_large_city(city_10k: City) -> None:
    ids = [s.component_id for s in city_10k.sensors]
    assert len(ids) == len(set(ids)) == city_10k.sensor_count


def test_class_codes_suit_the_sensor_kind() -> None:
    for sensor in build_city(seed=5, stations_per_district=5).sensors:
        expected = {
            SensorKind.COVER: COVER_CLASSES,
            SensorKind.POLE: POLE_CLASSES,
            SensorKind.PRESSURE: ("0101",),
        }[sensor.kind]
        assert sensor.class_code in expected
        assert sensor.class_code not in ("0104", "0113")  # grates and hydrants carry no cover


def test_sensors_sit_near_their_station_and_district() -> None:
    city = build_city(seed=9)
    for station in city.stations:
        centre = ZHENGZHOU_DISTRICTS[station.district_code]
        assert distance_m(station.lon, station.lat, centre.lon, centre.lat) < 3_100
        for sensor in station.sensors:
            assert distance_m(sensor.lon, sensor.lat, station.lon, station.lat) < SENSOR_SPREAD_M


def test_a_stations_sensors_mostly_share_one_or_two_grids(city_10k: City) -> None:
    shares = []
    for station in city_10k.stations:
        grids = Counter(s.grid_code for s in station.sensors)
        shares.append(sum(n for _, n in grids.most_common(2)) / len(station.sensors))
    assert sum(shares) / len(shares) > 0.8


def test_grid_codes_follow_position() -> None:
    assert grid_code("410105", 10.0, 10.0) == grid_code("410105", 900.0, 900.0)
    assert grid_code("410105", 10.0, 10.0) != grid_code("410105", 1_010.0, 10.0)
    assert grid_code("410105", -10.0, 10.0) != grid_code("410105", 10.0, 10.0)
    with pytest.raises(ValueError, match="outside"):
        grid_code("410105", 500_000.0, 0.0)


def test_lookup_by_id() -> None:
    city = build_city()
    station = city.stations[-1]
    sensor = station.sensors[-1]
    assert city.station(station.station_id) == station
    assert city.sensor(sensor.sensor_id) == sensor
    assert city.station_of(sensor.sensor_id) == station
    for sensor in city.sensors:
        assert city.sensor(sensor.sensor_id) is sensor
    for missing in ("st-000000-001.cover-01", "st-410105-001.cover-09", "st-410105-001", "x"):
        with pytest.raises(KeyError):
            city.sensor(missing)


def test_unknown_district_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown district"):
        build_city(districts=["110101"])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"stations_per_district": 0}, "stations_per_district"),
        ({"covers_per_station": 1000}, "of each kind"),
        ({"stations_per_district": 20_000, "covers_per_station": 60}, "6-digit"),
        ({"districts": ["410105", "410105"]}, "twice"),
    ],
)
def test_impossible_cities_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_city(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("size", [1, 12, 40, 500, 10_000])
def test_city_of_size_gets_close_to_the_size(size: int) -> None:
    city = city_of_size(size, seed=1)
    per_station = max(s.sensor_count for s in city.stations)
    assert abs(city.sensor_count - size) <= per_station * len(city.districts)
    assert city_of_size(size, seed=1) == city


def test_a_large_city_builds_its_sensors_only_when_asked() -> None:
    city = city_of_size(10_000, seed=4)
    assert len(city.stations) > 300
    assert 9_000 <= city.sensor_count <= 11_000
    assert not any("sensors" in vars(s) for s in city.stations)
    city.sensor(city.stations[-1].station_id + ".cover-01")
    assert [s for s in city.stations if "sensors" in vars(s)] == [city.stations[-1]]


def test_a_large_city_has_every_district_and_kind(city_10k: City) -> None:
    assert {d.code for d in city_10k.districts} == set(ZHENGZHOU_DISTRICTS)
    counts = Counter(s.kind for s in city_10k.sensors)
    assert counts[SensorKind.COVER] > counts[SensorKind.POLE] > counts[SensorKind.PRESSURE] > 0


def test_neighbours_are_within_radius_nearest_first_and_symmetric(city_10k: City) -> None:
    sensors = list(city_10k.sensors)[::97]
    for sensor in sensors:
        found = city_10k.neighbours(sensor.sensor_id, 400.0)
        distances = [d for _, d in found]
        assert distances == sorted(distances)
        assert all(d <= 400.0 for d in distances)
        assert sensor.sensor_id not in {s.sensor_id for s, _ in found}
        for other, distance in found:
            assert distance == pytest.approx(
                distance_m(sensor.lon, sensor.lat, other.lon, other.lat)
            )
            back = {s.sensor_id for s, _ in city_10k.neighbours(other.sensor_id, 400.0)}
            assert sensor.sensor_id in back


def test_neighbours_match_a_brute_force_search(city_10k: City) -> None:
    everyone = list(city_10k.sensors)
    centre = everyone[4321]
    expected = {
        s.sensor_id
        for s in everyone
        if s.kind is SensorKind.PRESSURE
        and s.sensor_id != centre.sensor_id
        and distance_m(centre.lon, centre.lat, s.lon, s.lat) <= 1_200.0
    }
    found = city_10k.neighbours(centre.sensor_id, 1_200.0, SensorKind.PRESSURE)
    assert {s.sensor_id for s, _ in found} == expected
    assert expected


def test_pressure_sensors_of_a_default_city_have_neighbours_on_their_main() -> None:
    city = build_city()
    for sensor in city.sensors:
        if sensor.kind is not SensorKind.PRESSURE:
            continue
        nearby = city.neighbours(sensor.sensor_id, 1_500.0, SensorKind.PRESSURE)
        assert len(nearby) >= 2
        assert all(other.kind is SensorKind.PRESSURE for other, _ in nearby)
        assert min(d for _, d in nearby) < 400.0


def test_stations_near_a_point() -> None:
    city = build_city(stations_per_district=20, districts=["410105"])
    centre = city.stations[0]
    near = city.stations_near(centre.lon, centre.lat, 1_000.0)
    assert near[0] == centre
    assert set(near) == {
        s for s in city.stations if distance_m(s.lon, s.lat, centre.lon, centre.lat) <= 1_000.0
    }
