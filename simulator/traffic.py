"""The street's rhythm: the time of day (possibly compressed), traffic over loose covers in
streams of back-to-back vehicles, and gusts of wind on poles.

Everything here is scheduled in time from seeded streams, block by block, so what happens at a
moment does not depend on when or how often it is asked.
"""

from __future__ import annotations

import math
import random
from bisect import bisect_right
from dataclasses import dataclass
from itertools import pairwise

from simulator.devices import DAY_S, Spike

BEIJING_OFFSET_S = 8 * 3600.0

TRAFFIC_BY_HOUR = (
    (0.0, 0.03),
    (5.0, 0.03),
    (6.5, 0.3),
    (7.0, 1.0),
    (9.0, 1.0),
    (9.5, 0.3),
    (16.5, 0.3),
    (17.0, 1.0),
    (19.0, 1.0),
    (19.5, 0.3),
    (22.0, 0.3),
    (23.0, 0.03),
    (24.0, 0.03),
)
"""Relative traffic by Beijing hour: rush hours 07-09 and 17-19, lighter by day, little at
night (piecewise linear between these knots)."""


@dataclass(frozen=True, slots=True)
class DayClock:
    """Time of day in Beijing, on a day that may run fast.

    With ``day_length_s`` shorter than 24 h the daily cycles (demand peaks, rush hours) run
    ``speed`` times faster; at ``anchor`` (epoch seconds, the scenario's start) the compressed
    day shows the real time of day.
    """

    day_length_s: float = DAY_S
    anchor: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 < self.day_length_s <= DAY_S:
            raise ValueError(f"a day lasts (0, 24 h], not {self.day_length_s} s")

    @property
    def speed(self) -> float:
        return DAY_S / self.day_length_s

    def hour(self, t: float) -> float:
        """Beijing hour of day (0-24) at epoch ``t``."""
        local = self.anchor + (t - self.anchor) * self.speed + BEIJING_OFFSET_S
        return (local % DAY_S) / 3600.0


REAL_DAY = DayClock()


def traffic(hour: float) -> float:
    """Relative traffic in (0, 1] at a Beijing hour."""
    knots = TRAFFIC_BY_HOUR
    for (h0, v0), (h1, v1) in pairwise(knots):
        if h0 <= hour <= h1:
            return v0 + (v1 - v0) * (hour - h0) / (h1 - h0)
    return knots[0][1]


@dataclass(frozen=True, slots=True)
class Kick:
    """One vehicle over a loose cover: the cover jumps to ``peak`` from ``start`` to ``end``,
    then re-seats at ``rest`` until the next vehicle."""

    start: float
    end: float
    peak: float
    rest: float


@dataclass(frozen=True, slots=True)
class VehicleStream:
    """Back-to-back vehicles over one cover from ``start`` to ``end`` (epoch seconds)."""

    start: float
    end: float
    kicks: tuple[Kick, ...]
    kick_starts: tuple[float, ...]


class VehicleStreams:
    """Streams of vehicles over one loose cover, drawn hour by hour.

    Stream starts are a Poisson process at ``rush_gap_s`` mean gap, thinned by the traffic of
    the hour (on ``clock``): at rush hour a stream every few minutes, at night hardly any.
    Within a stream each vehicle kicks the cover to 8-40° for 0.3-1.5 s and it re-seats
    (0.3-3°) for a fraction of a second to a few seconds before the next one.
    """

    BLOCK_S = 3600.0
    STREAM_S = (20.0, 120.0)
    MIN_GAP_S = 10.0
    VEHICLE_S = (0.3, 1.5)
    PEAK_DEG = (8.0, 40.0)
    REST_DEG = (0.3, 3.0)
    HEADWAY_S = (0.1, 1.0)
    """Re-seated time between two vehicles: at least the first, plus an exponential of mean
    the second."""

    def __init__(self, key: str, *, rush_gap_s: float, clock: DayClock = REAL_DAY) -> None:
        self.key, self.rush_gap_s, self.clock = key, rush_gap_s, clock
        self._blocks: dict[int, tuple[list[float], list[VehicleStream]]] = {}

    def streams(self, start: float, end: float) -> list[VehicleStream]:
        """Every stream that overlaps [start, end)."""
        blocks = range(math.floor(start / self.BLOCK_S), math.floor(end / self.BLOCK_S) + 1)
        return [s for b in blocks for s in self._block(b)[1] if s.start < end and s.end > start]

    def stream_at(self, t: float) -> VehicleStream | None:
        starts, streams = self._block(math.floor(t / self.BLOCK_S))
        index = bisect_right(starts, t) - 1
        if index >= 0 and t < streams[index].end:
            return streams[index]
        return None

    def tilt_at(self, t: float) -> float | None:
        """The cover's tilt at ``t`` while a stream passes (None outside streams)."""
        stream = self.stream_at(t)
        if stream is None:
            return None
        kicks = stream.kicks
        index = bisect_right(stream.kick_starts, t) - 1
        if index < 0:
            return kicks[0].rest
        kick = kicks[index]
        return kick.peak if t < kick.end else kick.rest

    def _block(self, block: int) -> tuple[list[float], list[VehicleStream]]:
        if block not in self._blocks:
            if len(self._blocks) > 3:
                self._blocks.clear()
            streams = self._draw(block)
            self._blocks[block] = ([s.start for s in streams], streams)
        return self._blocks[block]

    def _draw(self, block: int) -> list[VehicleStream]:
        rng = random.Random(f"{self.key}/{block}")
        first, last = block * self.BLOCK_S, (block + 1) * self.BLOCK_S
        cursor, streams = first + self.MIN_GAP_S / 2, list[VehicleStream]()
        while True:
            start = cursor + rng.expovariate(1 / self.rush_gap_s)
            end = start + rng.uniform(*self.STREAM_S)
            keep = rng.random() < traffic(self.clock.hour(start))
            if end > last - self.MIN_GAP_S / 2:
                return streams
            if keep:
                kicks = self._kicks(random.Random(f"{self.key}/{block}/{len(streams)}"), start, end)
                streams.append(VehicleStream(start, end, kicks, tuple(k.start for k in kicks)))
                cursor = end + self.MIN_GAP_S
            else:
                cursor = start

    def _kicks(self, rng: random.Random, start: float, end: float) -> tuple[Kick, ...]:
        kicks: list[Kick] = []
        t = start
        while True:
            kick_end = t + rng.uniform(*self.VEHICLE_S)
            if kick_end > end:
                return tuple(kicks)
            kicks.append(
                Kick(t, kick_end, rng.uniform(*self.PEAK_DEG), rng.uniform(*self.REST_DEG))
            )
            t = kick_end + self.HEADWAY_S[0] + rng.expovariate(1 / self.HEADWAY_S[1])


WIND_GUST_GAP_S = {"calm": None, "breezy": 45 * 60.0, "gusty": 4 * 60.0}
"""Mean time between gusts at one pole, by the scenario's wind."""
GUST_S = (2.0, 8.0)
"""How long a gust holds a pole over."""
GUST_TILT_DEG = (1.2, 2.2)
"""The tilt a gust pushes a pole to (past the 1-2° warn angle, never to the 3° urgent limit:
with sway and noise a gusted pole reads at most ~2.45°)."""
GUST_RAMP = 0.25
"""Share of a gust spent leaning over, and again straightening up."""


def gust_shape(spike: Spike, t: float) -> float:
    """How far into a gust's push the pole is at ``t``: 0 → 1 (plateau) → 0."""
    span = spike.end - spike.start
    x = (t - spike.start) / span
    if not 0.0 <= x < 1.0:
        return 0.0
    return min(1.0, x / GUST_RAMP, (1.0 - x) / GUST_RAMP)
