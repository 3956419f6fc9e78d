"""Views the composition root injects into the app: the station registry, the dead letters and
the rules. Ingest implements them (``ingest.registry.StationRegistry``,
``ingest.dead_letters.JsonlDeadLetters``, ``ingest.rules_control.RulesControl``); the center
never imports ingest."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, Protocol

from protocol import ReadingView, SensorInfo

HealthCheck = Callable[[], Awaitable[tuple[bool, str]]]
"""A dependency probe for ``/healthz``: ``(ok, detail)``. Exceptions and timeouts count as down."""


class StationRecord(Protocol):
    @property
    def station_id(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def boot_epoch(self) -> int: ...
    @property
    def status_since(self) -> datetime: ...
    @property
    def last_seen(self) -> datetime | None: ...
    @property
    def sensor_count(self) -> int: ...
    @property
    def lost_readings(self) -> int: ...


class SensorRecord(Protocol):
    @property
    def sensor_id(self) -> str: ...
    @property
    def info(self) -> SensorInfo | None: ...
    @property
    def owner_station_id(self) -> str | None: ...
    @property
    def reporting_station_id(self) -> str | None: ...
    @property
    def last_seen(self) -> datetime | None: ...
    @property
    def latest(self) -> ReadingView | None: ...


class RegistryView(Protocol):
    """Stations by id, one sensor, every registered sensor. Cheap, in-memory: called on the
    event loop."""

    def stations(self) -> Sequence[StationRecord]: ...

    def sensor_summary(self, sensor_id: str) -> SensorRecord | None: ...

    def registered_sensors(self) -> Sequence[tuple[str, SensorInfo]]:
        """Every sensor a birth named, with its owner station's id."""
        ...


class RejectRecord(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def received_at(self) -> datetime: ...
    @property
    def topic(self) -> str: ...
    @property
    def station_id(self) -> str | None: ...
    @property
    def reason(self) -> str: ...
    @property
    def detail(self) -> str: ...
    @property
    def payload(self) -> bytes: ...


class RejectStore(Protocol):
    """Dead letters, newest first, filtered; one page and the number that matched."""

    async def list_rejects(
        self,
        *,
        reason: str | None = None,
        station_id: str | None = None,
        since: datetime | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> tuple[Sequence[RejectRecord], int]: ...


class RulesAdmin(Protocol):
    """The node's rules as versioned configuration (``ingest.rules_control.RulesControl``)."""

    path: Path | None

    @property
    def current(self) -> RulesVersionView: ...

    @property
    def history(self) -> Sequence[RulesVersionView]: ...

    async def apply(self, text: str, author: str, source: Literal["api"] = "api") -> Any: ...

    @property
    def shadow(self) -> ShadowView | None: ...

    async def start_shadow(self, text: str, author: str) -> ShadowView: ...

    async def stop_shadow(self) -> ShadowView | None: ...

    def effective(self, sensor_id: str) -> dict[str, Any] | None:
        """Which rule settings apply to a sensor the node knows, and from which level."""
        ...


class ShadowView(Protocol):
    def report(self) -> dict[str, Any]: ...


class RulesVersionView(Protocol):
    @property
    def version(self) -> int: ...
    @property
    def at(self) -> datetime: ...
    @property
    def author(self) -> str: ...
    @property
    def source(self) -> str: ...
    @property
    def sha256(self) -> str: ...
    @property
    def text(self) -> str: ...
    @property
    def diff(self) -> str: ...
