"""What every incident is: the ``Incident`` protocol the fleet applies, the richer
``InjectedIncident`` that ground truth needs, and ``Window``, their shared timing."""

from __future__ import annotations

from abc import ABC, abstractmethod
from datetime import datetime, timedelta
from typing import ClassVar, Protocol, runtime_checkable

from protocol import SensorInfo, SensorKind
from protocol.gbt30428 import Category
from simulator.physics import aware_utc, epoch_seconds

ExpectedCase = tuple[Category, str]


@runtime_checkable
class Incident(Protocol):
    def applies_to(self, sensor_id: str) -> bool:
        """Whether this incident changes what ``sensor_id`` reads."""
        ...

    def active(self, ts: datetime) -> bool:
        """Whether the incident is going on at ``ts``."""
        ...

    def apply(self, values: dict[str, float], ts: datetime) -> dict[str, float]:
        """The values a touched sensor reads at ``ts`` while active; returns a new dict."""
        ...


@runtime_checkable
class InjectedIncident(Incident, Protocol):
    """An incident of a known kind, with everything ground truth needs."""

    kind: ClassVar[str]
    severity: ClassVar[str]
    """The severity its case should carry: critical, urgent, or maintenance."""

    @property
    def start(self) -> datetime: ...

    @property
    def duration(self) -> timedelta: ...

    @property
    def end(self) -> datetime: ...

    @property
    def sensor_ids(self) -> tuple[str, ...]:
        """Every sensor the incident touches; the first is where it happens."""
        ...

    def suits(self, sensor: SensorInfo) -> bool:
        """Whether the incident can happen at ``sensor`` (a gas leak needs a gas sensor)."""
        ...

    def affect(self, sensor_id: str, values: dict[str, float], ts: datetime) -> dict[str, float]:
        """What ``sensor_id`` reads at ``ts`` while active; ``apply`` for one sensor of many."""
        ...

    def expected_case(self, sensor: SensorInfo) -> ExpectedCase | None:
        """The GB/T 30428 (category, class) it should become at ``sensor``; None: no case."""
        ...


class Window(ABC):
    """Timing and sensor bookkeeping shared by incidents with a start and a fixed duration."""

    __slots__ = ()
    kind: ClassVar[str]
    severity: ClassVar[str]
    """The severity the case should carry: critical, urgent, or maintenance."""
    sensor_kind: ClassVar[SensorKind]
    start: datetime
    duration: timedelta

    @property
    def end(self) -> datetime:
        return self.start + self.duration

    @property
    @abstractmethod
    def sensor_ids(self) -> tuple[str, ...]: ...

    def active(self, ts: datetime) -> bool:
        return self.start <= ts < self.end

    def applies_to(self, sensor_id: str) -> bool:
        return sensor_id in self.sensor_ids

    @classmethod
    def suits(cls, sensor: SensorInfo) -> bool:
        return sensor.kind is cls.sensor_kind

    def apply(self, values: dict[str, float], ts: datetime) -> dict[str, float]:
        return self.affect(self.sensor_ids[0], values, ts)

    @abstractmethod
    def affect(
        self, sensor_id: str, values: dict[str, float], ts: datetime
    ) -> dict[str, float]: ...

    def elapsed_s(self, ts: datetime) -> float:
        return epoch_seconds(ts) - epoch_seconds(self.start)

    def _check_window(self) -> None:
        aware_utc(self.start)
        if self.duration <= timedelta(0):
            raise ValueError(f"an incident needs a positive duration, not {self.duration}")


class OneSensor(Window):
    """An incident at one sensor (``sensor_id``), touching no other."""

    __slots__ = ()
    sensor_id: str

    @property
    def sensor_ids(self) -> tuple[str, ...]:
        return (self.sensor_id,)

    def applies_to(self, sensor_id: str) -> bool:
        return sensor_id == self.sensor_id
