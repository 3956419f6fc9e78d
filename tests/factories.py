"""Builders for wire messages used across the tests."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from protocol import Reading, SensorInfo, SensorKind, StationState, TelemetryBatch

T0 = datetime(2026, 7, 1, 8, 0, tzinfo=UTC)


def sensor_info(
    sensor_id: str = "st-1.cover-01",
    kind: SensorKind = SensorKind.COVER,
    class_code: str = "0103",
) -> SensorInfo:
    return SensorInfo(
        sensor_id=sensor_id,
        kind=kind,
        class_code=class_code,
        component_id=f"410105{class_code}000123",
        grid_code="41010500100201",
        lon=113.68,
        lat=34.78,
        address="金水路 1 号",
    )


def cover_info(sensor_id: str = "st-1.cover-01", class_code: str = "0103") -> SensorInfo:
    return sensor_info(sensor_id, SensorKind.COVER, class_code)


def birth(station_id: str = "st-1", sensors: Sequence[SensorInfo] = ()) -> StationState:
    return StationState(
        station_id=station_id,
        status="online",
        boot_epoch=1,
        ts=T0,
        sensors=list(sensors) or [cover_info()],
    )


def tilt(seconds: float, value: float, sensor_id: str = "st-1.cover-01") -> Reading:
    return Reading(
        sensor_id=sensor_id,
        kind=SensorKind.COVER,
        ts=T0 + timedelta(seconds=seconds),
        values={"tilt_deg": value},
    )


def batch(
    readings: Sequence[Reading], seq: int = 0, station_id: str = "st-1", boot_epoch: int = 1
) -> TelemetryBatch:
    return TelemetryBatch(
        station_id=station_id,
        boot_epoch=boot_epoch,
        seq=seq,
        sent_at=max(r.ts for r in readings),
        readings=list(readings),
    )
