from __future__ import annotations

import re

import pytest

from protocol import SensorInfo, SensorKind, StationTopic
from protocol.gbt30428 import COVER_CLASSES, POLE_CLASSES
from protocol.topics import Channel
from simulator import ZHENGZHOU_DISTRICTS, build_city


def test_same_seed_builds_the_same_city() -> None:
    assert build_city(seed=11) == build_city(seed=11)


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
        assert kinds.count(SensorKind.PRESSURE) == 1
        assert kinds.count(SensorKind.POLE) == 1


def test_ids_and_codes_follow_the_standards() -> None:
    city = build_city(seed=3, stations_per_district=4, covers_per_station=6)
    component_ids = [s.component_id for s in city.sensors]
    assert len(set(component_ids)) == len(component_ids)
    for station in city.stations:
        county = station.district_code
        assert re.fullmatch(rf"st-{county}-\d{{3}}", station.station_id)
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
        assert abs(station.lon - centre.lon) < 0.04
        assert abs(station.lat - centre.lat) < 0.03
        for sensor in station.sensors:
            assert abs(sensor.lon - station.lon) < 0.004  # ~300 m
            assert abs(sensor.lat - station.lat) < 0.003


def test_lookup_by_id() -> None:
    city = build_city()
    station = city.stations[-1]
    sensor = station.sensors[-1]
    assert city.station(station.station_id) == station
    assert city.sensor(sensor.sensor_id) == sensor
    assert city.station_of(sensor.sensor_id) == station
    with pytest.raises(KeyError):
        city.sensor("st-000000-001.cover-01")


def test_unknown_district_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown district"):
        build_city(districts=["110101"])
