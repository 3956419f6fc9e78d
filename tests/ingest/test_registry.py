"""Station registry: presence from birth/death and silence, last seen, latest values, ownership."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from ingest.registry import RegistryConflict, StationRegistry
from protocol import StationState
from tests.factories import T0, batch, birth, cover_info, tilt


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def death(station_id: str = "st-1") -> StationState:
    return StationState(station_id=station_id, status="offline", boot_epoch=1, ts=T0)


def test_birth_death_and_silence() -> None:
    clock = Clock()
    registry = StationRegistry(silent_after=timedelta(minutes=5), clock=clock)
    registry.update(birth("st-1"))
    assert registry.status("st-1") == "online"

    clock.now = T0 + timedelta(minutes=6)
    assert registry.status("st-1") == "silent"
    registry.saw_batch(batch([tilt(1, 2.0)]), received_at=clock.now)
    assert registry.status("st-1") == "online"

    registry.update(death("st-1"))
    assert registry.status("st-1") == "offline"
    assert registry.counts() == {
        "stations_online": 0,
        "stations_offline": 1,
        "stations_silent": 0,
        "sensors_registered": 1,  # a dead station keeps its sensors
    }
    assert registry.status("st-unknown") is None


def test_saw_batch_keeps_last_seen_and_the_newest_reading_by_device_time() -> None:
    registry = StationRegistry(clock=Clock())
    registry.update(birth("st-1"))
    received = T0 + timedelta(seconds=30)
    registry.saw_batch(batch([tilt(10, 1.0), tilt(20, 2.0)]), received)
    registry.saw_batch(batch([tilt(5, 9.0)], seq=1), received + timedelta(seconds=1))  # backlog

    summary = registry.sensor_summary("st-1.cover-01")
    assert summary is not None
    assert summary.last_seen == received + timedelta(seconds=1)
    assert summary.latest is not None
    assert summary.latest.ts == T0 + timedelta(seconds=20)
    assert summary.latest.values == {"tilt_deg": 2.0}
    assert (summary.owner_station_id, summary.reporting_station_id) == ("st-1", "st-1")
    (station,) = registry.stations()
    assert (station.last_seen, station.sensor_count) == (received + timedelta(seconds=1), 1)


def test_a_sensor_never_born_is_still_seen() -> None:
    registry = StationRegistry(clock=Clock())
    registry.saw_batch(batch([tilt(1, 1.0, sensor_id="ghost")]), T0)
    summary = registry.sensor_summary("ghost")
    assert summary is not None
    assert (summary.info, summary.owner_station_id, summary.reporting_station_id) == (
        None,
        None,
        "st-1",
    )
    assert registry.sensor_summary("never") is None


def test_unknown_sensors_tracked_are_bounded() -> None:
    registry = StationRegistry(clock=Clock(), max_sensors_tracked=1)
    registry.saw_batch(batch([tilt(1, 1.0, sensor_id="a"), tilt(1, 1.0, sensor_id="b")]), T0)
    assert registry.sensor_summary("b") is None
    assert registry.untracked_readings == 1


def test_birth_claiming_another_stations_sensor_is_refused_and_changes_nothing() -> None:
    registry = StationRegistry(clock=Clock())
    registry.update(birth("st-1", [cover_info("s-1")]))
    registry.update(death("st-1"))  # offline but known: still the owner

    with pytest.raises(RegistryConflict) as refused:
        registry.update(birth("st-2", [cover_info("s-2"), cover_info("s-1")]))
    assert refused.value.reason == "sensor_claimed"
    assert "s-1 (owned by st-1)" in refused.value.detail
    assert registry.owner("s-1") == "st-1"
    assert registry.owner("s-2") is None
    assert registry.presence("st-2") is None

    assert registry.release("st-1")
    registry.update(birth("st-2", [cover_info("s-1")]))
    assert registry.owner("s-1") == "st-2"


def test_a_rebirth_replaces_the_stations_own_sensors() -> None:
    registry = StationRegistry(clock=Clock())
    registry.update(birth("st-1", [cover_info("s-1"), cover_info("s-2")]))
    registry.update(birth("st-1", [cover_info("s-2")]))
    assert (registry.owner("s-1"), registry.owner("s-2")) == (None, "st-1")
    assert registry.sensor("s-1") is None
