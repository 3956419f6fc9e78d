"""The city's rain, drawn day by day from the seed.

Each day's showers come from their own stream (``seed``, day), so the weather at a moment does
not depend on what was asked before. A shower is city-wide; each district sees it a little
stronger or weaker and a few minutes earlier or later, as a storm crosses the city.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import UTC, datetime

DAY_S = 86_400.0
RAIN_DAY_PROBABILITY = 0.3
"""Share of days with rain (Zhengzhou: ~70-80 rain days a year, more in summer; estimate)."""
SHOWER_S = (20 * 60.0, 3 * 3600.0)
"""Shortest and longest shower."""
INTENSITY_MM_H = (1.0, 25.0)
"""Light rain to a heavy shower."""
DISTRICT_FACTOR = (0.5, 1.4)
DISTRICT_LAG_S = (0.0, 20 * 60.0)


@dataclass(frozen=True, slots=True)
class Shower:
    """Rain of a steady intensity from ``start`` to ``end`` (epoch seconds)."""

    start: float
    end: float
    intensity_mm_h: float

    def runoff(self, t: float, tau_s: float) -> float:
        """What a linear reservoir with time constant ``tau_s`` holds at ``t``, in mm/h.

        It fills towards the intensity while the shower lasts and drains after it.
        """
        if t <= self.start:
            return 0.0
        if t <= self.end:
            return self.intensity_mm_h * (1.0 - math.exp(-(t - self.start) / tau_s))
        full = self.intensity_mm_h * (1.0 - math.exp(-(self.end - self.start) / tau_s))
        return full * math.exp(-(t - self.end) / tau_s)


@dataclass(frozen=True, slots=True)
class RainEvent:
    """A city-wide shower, for scenarios and tests that want to know when it rains."""

    start: datetime
    end: datetime
    intensity_mm_h: float


class Weather:
    """Rain over the city for one seed; cheap to query at any time, in any order."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._days: dict[int, tuple[Shower, ...]] = {}
        self._local: dict[tuple[int, int, str], Shower] = {}

    def showers_on(self, day: int) -> tuple[Shower, ...]:
        """City-wide showers starting on UTC day ``day`` (days since the epoch)."""
        if day not in self._days:
            rng = random.Random(f"{self.seed}/weather/{day}")
            count = 0
            if rng.random() < RAIN_DAY_PROBABILITY:
                count = 1 + (rng.random() < 0.35)
            showers = []
            for _ in range(count):
                start = day * DAY_S + rng.uniform(0.0, DAY_S)
                end = start + rng.uniform(*SHOWER_S)
                showers.append(Shower(start, end, rng.uniform(*INTENSITY_MM_H)))
            self._days[day] = tuple(sorted(showers, key=lambda s: s.start))
        return self._days[day]

    def rain_events(self, start: datetime, end: datetime) -> list[RainEvent]:
        """City-wide showers that overlap [start, end)."""
        t0, t1 = start.timestamp(), end.timestamp()
        events = []
        for day in range(math.floor(t0 / DAY_S) - 1, math.floor(t1 / DAY_S) + 1):
            for shower in self.showers_on(day):
                if shower.start < t1 and shower.end > t0:
                    events.append(
                        RainEvent(
                            datetime.fromtimestamp(shower.start, UTC),
                            datetime.fromtimestamp(shower.end, UTC),
                            shower.intensity_mm_h,
                        )
                    )
        return events

    def local_showers(self, district: str | None, t: float) -> list[Shower]:
        """Showers as ``district`` sees them that may still matter at epoch ``t``.

        A shower lasts at most three hours and drains within hours, so the showers of the day
        before and of the day itself are enough.
        """
        day = math.floor(t / DAY_S)
        return [
            self._at(district, d, index, shower)
            for d in (day - 1, day)
            for index, shower in enumerate(self.showers_on(d))
        ]

    def runoff(self, district: str | None, t: float, tau_s: float) -> float:
        """Rain a drain with time constant ``tau_s`` holds at ``t`` in ``district``, in mm/h."""
        return sum(shower.runoff(t, tau_s) for shower in self.local_showers(district, t))

    def _at(self, district: str | None, day: int, index: int, shower: Shower) -> Shower:
        if district is None:
            return shower
        key = (day, index, district)
        if key not in self._local:
            rng = random.Random(f"{self.seed}/weather/{day}/{index}/{district}")
            factor, lag = rng.uniform(*DISTRICT_FACTOR), rng.uniform(*DISTRICT_LAG_S)
            self._local[key] = Shower(
                shower.start + lag, shower.end + lag, shower.intensity_mm_h * factor
            )
        return self._local[key]
