"""Station registry and presence.

Kept from the stations' retained birth/death messages (``update``) and from the telemetry they
send (``saw_batch``, on the hot path: a few dict writes per reading). A station is ``online``
after its birth, ``offline`` after its death, and ``silent`` when it is online but nothing came
from it for ``silent_after``. A sensor belongs to the station whose birth named it first: a birth
from another station that claims it is refused with ``RegistryConflict`` until the owner is
released (``release``). The readings a station's outbox gave up come from the gap tracker
(``watch_losses``), which keeps them in ingest's checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from protocol import BatchView, ReadingView, SensorInfo, StationState

StationStatus = Literal["online", "offline", "silent"]
DEFAULT_SILENT_AFTER = timedelta(minutes=5)
DEFAULT_MAX_SENSORS_TRACKED = 1_000_000


def utc_now() -> datetime:
    return datetime.now(UTC)


class RegistryConflict(Exception):  # noqa: N818 — the domain's word, as the brief names it
    """A birth the registry refuses; ``reason`` is the dead-letter reason."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Presence:
    status: str
    boot_epoch: int
    since: datetime


@dataclass(frozen=True, slots=True)
class StationSummary:
    """What the registry knows of one station (read by the center's ``/api/v1/stations``)."""

    station_id: str
    status: StationStatus
    boot_epoch: int
    status_since: datetime
    last_seen: datetime | None
    sensor_count: int
    lost_readings: int = 0
    """Readings its outbox gave up unsent (its gap reports, each counted once)."""


@dataclass(frozen=True, slots=True)
class SensorSummary:
    """What the registry knows of one sensor (read by ``/api/v1/sensors/{id}``)."""

    sensor_id: str
    info: SensorInfo | None
    owner_station_id: str | None
    reporting_station_id: str | None
    last_seen: datetime | None
    latest: ReadingView | None


class StationRegistry:
    def __init__(
        self,
        *,
        silent_after: timedelta = DEFAULT_SILENT_AFTER,
        clock: Callable[[], datetime] = utc_now,
        max_sensors_tracked: int = DEFAULT_MAX_SENSORS_TRACKED,
    ) -> None:
        self.silent_after = silent_after
        self.clock = clock
        self.max_sensors_tracked = max_sensors_tracked
        self.untracked_readings = 0
        """Readings of unknown sensors not tracked because ``max_sensors_tracked`` was reached."""
        self._sensors: dict[str, SensorInfo] = {}
        self._owner: dict[str, str] = {}
        self._station_sensors: dict[str, tuple[str, ...]] = {}
        self._presence: dict[str, Presence] = {}
        self._station_seen: dict[str, datetime] = {}
        self._sensor_seen: dict[str, tuple[datetime, str]] = {}
        self._latest: dict[str, ReadingView] = {}
        self._lost: Callable[[str], int] = _none_lost

    def watch_losses(self, lost_readings: Callable[[str], int]) -> None:
        """Where the readings a station's outbox gave up are counted (the gap tracker)."""
        self._lost = lost_readings

    # -- what ingest calls ------------------------------------------------------------------

    def update(self, state: StationState, received_at: datetime | None = None) -> None:
        """Apply a birth or death. A birth naming a sensor another station owns raises
        ``RegistryConflict`` (reason ``sensor_claimed``) and changes nothing."""
        station_id = state.station_id
        if state.status == "online":
            claimed = [
                f"{s.sensor_id} (owned by {owner})"
                for s in state.sensors
                if (owner := self._owner.get(s.sensor_id, station_id)) != station_id
            ]
            if claimed:
                raise RegistryConflict(
                    "sensor_claimed", f"birth of {station_id} claims " + ", ".join(claimed)
                )
            for old in self._station_sensors.get(station_id, ()):
                self._sensors.pop(old, None)
                self._owner.pop(old, None)
            self._station_sensors[station_id] = tuple(s.sensor_id for s in state.sensors)
            for sensor in state.sensors:
                self._sensors[sensor.sensor_id] = sensor
                self._owner[sensor.sensor_id] = station_id
        self._presence[station_id] = Presence(state.status, state.boot_epoch, state.ts)
        self._station_seen[station_id] = received_at or self.clock()

    def saw_batch(self, batch: BatchView, received_at: datetime) -> None:
        """Last seen (wall time) of the station and its sensors; latest reading per sensor
        (the newest by device time, so a backlog does not overwrite fresher values)."""
        station_id = batch.station_id
        self._station_seen[station_id] = received_at
        seen = (received_at, station_id)
        sensor_seen = self._sensor_seen
        latest = self._latest
        for reading in batch.readings:
            sensor_id = reading.sensor_id
            previous = latest.get(sensor_id)
            if previous is None:
                if len(latest) >= self.max_sensors_tracked and sensor_id not in self._sensors:
                    self.untracked_readings += 1
                    continue
                latest[sensor_id] = reading
            elif reading.ts >= previous.ts:
                latest[sensor_id] = reading
            sensor_seen[sensor_id] = seen

    def release(self, station_id: str) -> bool:
        """Forget a station and free its sensors for another birth (an operator's decision)."""
        for sensor_id in self._station_sensors.pop(station_id, ()):
            self._sensors.pop(sensor_id, None)
            self._owner.pop(sensor_id, None)
        self._station_seen.pop(station_id, None)
        return self._presence.pop(station_id, None) is not None

    # -- lookups ----------------------------------------------------------------------------

    def owner(self, sensor_id: str) -> str | None:
        return self._owner.get(sensor_id)

    def sensor(self, sensor_id: str) -> SensorInfo | None:
        return self._sensors.get(sensor_id)

    def screen(self, station_id: str, readings: Sequence[ReadingView]) -> tuple[str | None, int]:
        """One pass over a batch: the first sensor a birth gave to another station (None: no
        such sensor), and how many readings are of sensors no birth registered."""
        owner_of = self._owner.get
        unregistered = 0
        for reading in readings:
            owner = owner_of(reading.sensor_id)
            if owner is None:
                unregistered += 1
            elif owner != station_id:
                return reading.sensor_id, unregistered
        return None, unregistered

    def location(self, sensor_id: str) -> tuple[float, float] | None:
        sensor = self._sensors.get(sensor_id)
        return None if sensor is None else (sensor.lon, sensor.lat)

    def district(self, sensor_id: str) -> str | None:
        """The sensor's district code: the first six digits of its component id."""
        sensor = self._sensors.get(sensor_id)
        return None if sensor is None else sensor.component_id[:6]

    def presence(self, station_id: str) -> Presence | None:
        return self._presence.get(station_id)

    def status(self, station_id: str, now: datetime | None = None) -> StationStatus | None:
        presence = self._presence.get(station_id)
        if presence is None:
            return None
        if presence.status != "online":
            return "offline"
        last = self._station_seen.get(station_id)
        if last is not None and (now or self.clock()) - last > self.silent_after:
            return "silent"
        return "online"

    def counts(self) -> dict[str, int]:
        now = self.clock()
        statuses = [self.status(station_id, now) for station_id in self._presence]
        return {
            "stations_online": statuses.count("online"),
            "stations_offline": statuses.count("offline"),
            "stations_silent": statuses.count("silent"),
            "sensors_registered": len(self._sensors),
        }

    # -- the center's read-only view (``center.api.stations.RegistryView``) -----------------

    def stations(self) -> list[StationSummary]:
        """Every known station, by id."""
        now = self.clock()
        return [self._summary(station_id, now) for station_id in sorted(self._presence)]

    def station(self, station_id: str) -> StationSummary | None:
        if station_id not in self._presence:
            return None
        return self._summary(station_id, self.clock())

    def registered_sensors(self) -> list[tuple[str, SensorInfo]]:
        """Every sensor a birth named, with its owner station, by sensor id (the map)."""
        return [(self._owner[s], self._sensors[s]) for s in sorted(self._sensors)]

    def sensor_summary(self, sensor_id: str) -> SensorSummary | None:
        info = self._sensors.get(sensor_id)
        seen = self._sensor_seen.get(sensor_id)
        if info is None and seen is None:
            return None
        return SensorSummary(
            sensor_id=sensor_id,
            info=info,
            owner_station_id=self._owner.get(sensor_id),
            reporting_station_id=None if seen is None else seen[1],
            last_seen=None if seen is None else seen[0],
            latest=self._latest.get(sensor_id),
        )

    def _summary(self, station_id: str, now: datetime) -> StationSummary:
        presence = self._presence[station_id]
        status = self.status(station_id, now)
        assert status is not None
        return StationSummary(
            station_id=station_id,
            status=status,
            boot_epoch=presence.boot_epoch,
            status_since=presence.since,
            last_seen=self._station_seen.get(station_id),
            sensor_count=len(self._station_sensors.get(station_id, ())),
            lost_readings=self._lost(station_id),
        )


def _none_lost(_station_id: str) -> int:
    return 0
