"""Building blocks of sensor physics: time helpers, seeded streams, spikes scheduled in time,
and the battery of a battery-powered device."""

from __future__ import annotations

import math
import random
from bisect import bisect_right
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

BEIJING = timezone(timedelta(hours=8))
DAY_S = 86_400.0
YEAR_S = 365.25 * DAY_S

LOW_BATTERY_V = 3.1
"""What a nearly flat 3.6 V lithium (Li-SOCl2) cell reads (estimate; devices warn at 3.2-3.3 V)."""
EMPTY_BATTERY_V = 2.8
INSTALLED_FROM = datetime(2025, 1, 1, tzinfo=UTC).timestamp()
"""Devices were installed over the year from this date."""


def aware_utc(ts: datetime) -> datetime:
    """``ts`` in UTC; refuses naive timestamps, which cannot be placed in event time."""
    if ts.tzinfo is None or ts.utcoffset() is None:
        raise ValueError(f"naive timestamp {ts.isoformat()}: use timezone-aware UTC")
    return ts.astimezone(UTC)


def epoch_seconds(ts: datetime) -> float:
    return aware_utc(ts).timestamp()


def beijing_hour(ts: datetime) -> float:
    """Local hour of day (0-24) in Beijing time, UTC+8."""
    local = aware_utc(ts).astimezone(BEIJING)
    return local.hour + local.minute / 60 + local.second / 3600


def stream(seed: int, sensor_id: str, purpose: str) -> random.Random:
    """A random stream of its own for one purpose of one sensor."""
    return random.Random(f"{seed}/{sensor_id}/{purpose}")


def daily(t: float, phase: float) -> float:
    """A 24 h sine in [-1, 1]."""
    return math.sin(2 * math.pi * t / DAY_S + phase)


@dataclass(frozen=True, slots=True)
class Spike:
    """A brief excursion: a vehicle rocking a cover, a truck knocking a pole."""

    start: float
    end: float
    peak: float


Rocking = Spike


class SpikeSchedule:
    """Spikes at random times, drawn hour by hour from a stream per hour.

    Which spikes happen does not depend on when or how often the schedule is asked; two spikes
    are always at least ``min_gap_s`` apart, also across the hour boundary.
    """

    BLOCK_S = 3600.0

    def __init__(
        self,
        key: str,
        *,
        mean_gap_s: float,
        min_gap_s: float,
        duration_s: tuple[float, float],
        peak: tuple[float, float],
    ) -> None:
        self.key = key
        self.mean_gap_s, self.min_gap_s = mean_gap_s, min_gap_s
        self.duration_s, self.peak = duration_s, peak
        self._blocks: dict[int, tuple[list[float], list[Spike]]] = {}

    def at(self, t: float) -> Spike | None:
        """The spike going on at epoch ``t``, if any."""
        starts, spikes = self._block(math.floor(t / self.BLOCK_S))
        index = bisect_right(starts, t) - 1
        if index >= 0 and t < spikes[index].end:
            return spikes[index]
        return None

    def spikes(self, start: float, end: float) -> list[Spike]:
        """Every spike that starts in [start, end)."""
        blocks = range(math.floor(start / self.BLOCK_S), math.floor(end / self.BLOCK_S) + 1)
        return [s for b in blocks for s in self._block(b)[1] if start <= s.start < end]

    def _block(self, block: int) -> tuple[list[float], list[Spike]]:
        if block not in self._blocks:
            if len(self._blocks) > 3:
                self._blocks.clear()
            self._blocks[block] = self._draw(block)
        return self._blocks[block]

    def _draw(self, block: int) -> tuple[list[float], list[Spike]]:
        rng = random.Random(f"{self.key}/{block}")
        first, last = block * self.BLOCK_S, (block + 1) * self.BLOCK_S
        cursor = first + self.min_gap_s / 2
        spikes = []
        while True:
            start = cursor + rng.expovariate(1 / self.mean_gap_s)
            end = start + rng.uniform(*self.duration_s)
            if end > last - self.min_gap_s / 2:
                break
            spikes.append(Spike(start, end, rng.uniform(*self.peak)))
            cursor = end + self.min_gap_s
        return [s.start for s in spikes], spikes


class Battery:
    """A primary lithium cell: ~3.6 V fresh, sagging slowly over the years at a rate of its
    own, a little with the daily temperature swing, and flat when told to run low."""

    def __init__(self, seed: int, sensor_id: str, *, low: bool = False) -> None:
        setup = stream(seed, sensor_id, "battery")
        self.fresh_v = setup.uniform(3.55, 3.65)
        self.drain_v_per_year = setup.uniform(0.01, 0.05)
        self.installed = INSTALLED_FROM + setup.uniform(0.0, 365.0) * DAY_S
        self._phase = setup.uniform(0.0, 2 * math.pi)
        self._low: tuple[float, float] | None = (-math.inf, LOW_BATTERY_V) if low else None

    def run_low(self, since: datetime, volts: float = LOW_BATTERY_V) -> None:
        """From ``since`` on, the battery reads about ``volts``."""
        if not EMPTY_BATTERY_V <= volts <= self.fresh_v:
            limits = f"{EMPTY_BATTERY_V}..{self.fresh_v:.2f} V"
            raise ValueError(f"a low battery reads {limits}, not {volts}")
        self._low = (epoch_seconds(since), volts)

    def level(self, t: float) -> float:
        """Voltage at epoch ``t`` without measurement noise."""
        age_years = max(0.0, t - self.installed) / YEAR_S
        volts = self.fresh_v - self.drain_v_per_year * age_years
        if self._low is not None and t >= self._low[0]:
            volts = min(volts, self._low[1])
        return max(EMPTY_BATTERY_V, volts + 0.02 * daily(t, self._phase))

    def volts(self, t: float, noise: random.Random) -> float:
        """What the device measures at epoch ``t``."""
        return self.level(t) + noise.gauss(0.0, 0.003)
