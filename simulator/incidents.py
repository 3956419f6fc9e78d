"""Incidents: labelled anomalies injected on top of normal physics.

An incident knows which sensors it touches, when it is going on, and how it changes what those
sensors read. Each incident is also its own ground truth: a scenario can list what it injected
and check which cases the platform opened.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol, runtime_checkable

from simulator.physics import aware_utc, epoch_seconds


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


class Window:
    """Timing shared by incidents that start at one moment and last a fixed time."""

    __slots__ = ()
    start: datetime
    duration: timedelta

    @property
    def end(self) -> datetime:
        return self.start + self.duration

    def active(self, ts: datetime) -> bool:
        return self.start <= ts < self.end

    def _check_window(self) -> None:
        aware_utc(self.start)
        if self.duration <= timedelta(0):
            raise ValueError(f"an incident needs a positive duration, not {self.duration}")


@dataclass(frozen=True, slots=True)
class CoverOpen(Window):
    """A manhole cover lifted, displaced or missing: its tilt reads about ``angle_deg``."""

    sensor_id: str
    start: datetime
    duration: timedelta
    angle_deg: float = 75.0

    def __post_init__(self) -> None:
        self._check_window()
        if not 0.0 < self.angle_deg <= 180.0:
            raise ValueError(f"cover angle must be in (0, 180] degrees, not {self.angle_deg}")

    def applies_to(self, sensor_id: str) -> bool:
        return sensor_id == self.sensor_id

    def apply(self, values: dict[str, float], ts: datetime) -> dict[str, float]:
        wobble = 0.5 * math.sin(1.3 * epoch_seconds(ts))
        return {**values, "tilt_deg": self.angle_deg + wobble}
