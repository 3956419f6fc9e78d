"""A scoped run: a recording replayed under station ids of its own (``citysense replay
--run-id``), and the run record ``citysense score --run-id`` reads to score only that run."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import aiomqtt
from pydantic import TypeAdapter, ValidationError

from protocol.models import SensorId, StationId
from protocol.topics import TOPIC_ROOT
from recording.format import Record
from recording.replay import ReplayError

RUN_ID_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,23}$"
"""A run id: the prefix of every station and sensor id of the run is ``<run id>-``."""
_RUN_ID = re.compile(RUN_ID_PATTERN)
_SENSOR_ID: TypeAdapter[str] = TypeAdapter(SensorId)
_STATION_ID: TypeAdapter[str] = TypeAdapter(StationId)
_STATIONS_ROOT: Final = f"{TOPIC_ROOT}/stations/"
RUN_RECORD_VERSION: Final = 1


class RunScopeError(ValueError):
    """A run id that is not one, or an id the run's prefix would push past the protocol."""


@dataclass(frozen=True, slots=True)
class RunPrefix:
    """Renames everything that names a station, as ``<run id>-<original id>``.

    A sensor id is ``<station id>.<local id>``, so prefixing station and sensor ids alike keeps
    every sensor bound to its station (and a foreign sensor foreign). Renamed: the station level
    of a topic under ``citysense/v1/stations/``; in a JSON object payload its ``station_id`` and
    the ``sensor_id`` of each of its ``readings`` (telemetry) and ``sensors`` (a birth). A
    payload that is not a JSON object, or names nothing, goes out byte for byte (junk stays junk).
    """

    run_id: str

    def __post_init__(self) -> None:
        if not _RUN_ID.fullmatch(self.run_id):
            raise RunScopeError(
                f"run id {self.run_id!r} is not 1-24 letters, digits, '_' or '-' "
                "(starting with a letter or digit)"
            )

    @property
    def prefix(self) -> str:
        return f"{self.run_id}-"

    def station(self, station_id: str) -> str:
        return self._renamed(station_id, _STATION_ID, "station", 64)

    def sensor(self, sensor_id: str) -> str:
        return self._renamed(sensor_id, _SENSOR_ID, "sensor", 128)

    def _renamed(self, value: str, valid: TypeAdapter[str], what: str, limit: int) -> str:
        renamed = self.prefix + value
        if _is_valid(valid, value) and not _is_valid(valid, renamed):
            raise RunScopeError(
                f"{what} id {value!r} is too long for run id {self.run_id!r}: "
                f"{what} ids have at most {limit} characters"
            )
        return renamed  # an id that was invalid stays invalid: ingest refuses it as before

    def topic(self, topic: str) -> str | None:
        """The topic under the run's station id; None for a topic outside the stations (such as
        ingest's presence in a capture), which a scoped run does not publish."""
        if not topic.startswith(_STATIONS_ROOT):
            return None
        station, slash, rest = topic[len(_STATIONS_ROOT) :].partition("/")
        return f"{_STATIONS_ROOT}{self.station(station)}{slash}{rest}"

    def payload(self, payload: bytes) -> bytes:
        try:
            document = json.loads(payload)
        except (ValueError, RecursionError):
            return payload
        if not isinstance(document, dict) or not self._rename_in(document):
            return payload
        return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()

    def _rename_in(self, document: dict[str, Any]) -> bool:
        renamed = False
        if isinstance(document.get("station_id"), str):
            document["station_id"] = self.station(document["station_id"])
            renamed = True
        for key in ("readings", "sensors"):
            items = document.get(key)
            for item in items if isinstance(items, list) else ():
                if isinstance(item, dict) and isinstance(item.get("sensor_id"), str):
                    item["sensor_id"] = self.sensor(item["sensor_id"])
                    renamed = True
        return renamed

    def record(self, record: Record) -> Record | None:
        """The record as the run publishes it, or None when it is not published."""
        topic = self.topic(record.topic)
        if topic is None:
            return None
        return Record(record.t_ns, topic, self.payload(record.payload), record.qos, record.retain)


def _is_valid(adapter: TypeAdapter[str], value: str) -> bool:
    """Whether the id passes the protocol's own type (its pattern, as ingest checks it)."""
    try:
        adapter.validate_python(value)
    except ValidationError:
        return False
    return True


def recorded_stations(topics: Iterable[str]) -> list[str]:
    """The station ids a recording's topics name (its summary's ``topics``), sorted."""
    return sorted(
        {
            topic[len(_STATIONS_ROOT) :].partition("/")[0]
            for topic in topics
            if topic.startswith(_STATIONS_ROOT)
        }
    )


@dataclass(frozen=True, slots=True)
class RunRecord:
    """What ``citysense replay --run-id`` did, written beside the recording before the first
    message goes out and again when the last is confirmed; ``citysense score --run-id`` reads
    it to score only this run's stations and the cases that arrived after it started."""

    run_id: str
    recording: str
    metadata: dict[str, Any]
    """The recording's header (a simulated run names its scenario and seed)."""
    broker: str
    speed: float | None
    started_at: datetime
    """Wall clock (UTC) just before the first message was published."""
    stations: dict[str, str]
    """Original station id -> the run's."""
    finished_at: datetime | None = None
    """None while the replay runs, or when it failed or was interrupted."""
    published: int = 0
    skipped: int = 0
    """Messages on topics outside the stations, not published in a scoped run."""

    @property
    def prefix(self) -> str:
        return RunPrefix(self.run_id).prefix

    def write(self, path: Path) -> None:
        document = {"version": RUN_RECORD_VERSION, **asdict(self)}
        for name in ("started_at", "finished_at"):
            value = document[name]
            document[name] = None if value is None else value.isoformat().replace("+00:00", "Z")
        temporary = path.with_name(path.name + ".tmp")
        temporary.write_text(json.dumps(document, indent=1, ensure_ascii=False) + "\n")
        temporary.replace(path)

    @classmethod
    def read(cls, path: Path) -> RunRecord:
        document = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(document, dict) or document.get("version") != RUN_RECORD_VERSION:
            raise ValueError(f"{path}: not a run record of version {RUN_RECORD_VERSION}")
        finished = document["finished_at"]
        return cls(
            run_id=str(document["run_id"]),
            recording=str(document["recording"]),
            metadata=dict(document["metadata"]),
            broker=str(document["broker"]),
            speed=document["speed"],
            started_at=_utc(document["started_at"]),
            stations={str(k): str(v) for k, v in document["stations"].items()},
            finished_at=None if finished is None else _utc(finished),
            published=int(document["published"]),
            skipped=int(document["skipped"]),
        )


def _utc(text: str) -> datetime:
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        raise ValueError(f"time {text!r} has no timezone")
    return value


def run_record_path(directory: Path, name: str, run_id: str) -> Path:
    """``<directory>/<name>.<run id>.run.json``: beside the recording ``<name>.csrec`` and its
    truth ``<name>.truth.json``, as ``citysense simulate`` writes them."""
    return directory / f"{name}.{run_id}.run.json"


async def retained_births(
    host: str, port: int, station_ids: Iterable[str], within_s: float = 10.0
) -> list[str]:
    """The stations among ``station_ids`` the broker holds a retained ``state`` for: a run id
    that was replayed into this broker before.

    Subscribes to their state topics and to a topic of its own, then publishes to that one:
    the broker sends the retained messages before it, so its arrival ends the wait."""
    marker = f"{TOPIC_ROOT}/replay-check/{uuid.uuid4().hex}"
    found: set[str] = set()
    topics = [(f"{_STATIONS_ROOT}{sid}/state", 0) for sid in station_ids]
    try:
        async with (
            asyncio.timeout(within_s),
            aiomqtt.Client(
                host, port, identifier=f"citysense-replay-check-{uuid.uuid4().hex[:8]}"
            ) as client,
        ):
            for start in range(0, len(topics), 100):
                await client.subscribe(topics[start : start + 100])
            await client.subscribe(marker)
            await client.publish(marker, b"", qos=0)
            async for message in client.messages:
                topic = str(message.topic)
                if topic == marker:
                    break
                if message.retain and message.payload:
                    found.add(topic[len(_STATIONS_ROOT) :].partition("/")[0])
    except (aiomqtt.MqttError, OSError, TimeoutError) as exc:
        raise ReplayError(f"cannot check the broker at {host}:{port} for the run: {exc}") from None
    return sorted(found)
