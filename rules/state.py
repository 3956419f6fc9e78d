"""The engine's state: small slotted records per sensor, per (sensor, rule) while something is
going on, per station (clock, watermark, reorder buffer) and per open incident. No alert objects:
a case is named by its key, and the evidence buffer lives only while a condition is pending.
Everything here turns into plain JSON-able data (``rules.snapshot``) and back."""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

from rules.conditions import Memory

IDLE, PENDING, ARMED, OPEN, CLEARING = 0, 1, 2, 3, 4
"""Phases of a track. ARMED: held long enough, waiting for neighbours (``group.min_sensors``)."""
EVIDENCE_LIMIT = 20

BufferedReading = tuple[float, int, str, str, dict[str, float], tuple[str, ...]]
"""(event time, arrival order, sensor id, kind, values, flags), as it waits for the watermark."""


class Track:
    """One rule on one sensor, kept while the condition is pending or open, while the rule needs
    a memory of the sensor (rates, baselines), or while recent openings matter (flapping)."""

    __slots__ = (
        "clear_since",
        "evidence",
        "flags",
        "flapping",
        "hi",
        "hits",
        "incident",
        "last_cond",
        "lo",
        "memory",
        "opens",
        "phase",
        "since",
    )

    def __init__(self) -> None:
        self.phase = IDLE
        self.since = 0.0
        """Start of the pending condition (PENDING/ARMED)."""
        self.clear_since = 0.0
        self.last_cond = False
        self.evidence: list[tuple[float, float]] | None = None
        self.lo = self.hi = 0.0
        self.hits: list[float] | None = None
        """Count rules: event times (``within``) or 1/0 outcomes (``of``) of recent readings."""
        self.incident: tuple[str, float] | None = None
        """(first sensor, start) of the incident this sensor is part of, while OPEN/CLEARING, and
        of its last incident afterwards (a flapping condition re-opens it)."""
        self.opens: list[float] | None = None
        self.flapping = False
        self.flags: set[str] | None = None
        self.memory: Memory | None = None

    def removable(self) -> bool:
        return self.phase == IDLE and self.memory is None and not self.opens


class SensorState:
    __slots__ = ("kind", "last_t", "station", "tracks")

    def __init__(self, station: str, kind: str) -> None:
        self.station = station
        self.kind = kind
        self.last_t = float("-inf")
        """Event time of the newest reading evaluated."""
        self.tracks: dict[str, Track] | None = None


@dataclass(slots=True)
class StationState:
    """Event time at one station: its watermark, how far evaluation has got (``clock``), the
    device clock offset its batches show, and readings waiting for the allowed lateness."""

    watermark: float = float("-inf")
    clock: float = float("-inf")
    born: float = float("-inf")
    offsets: list[float] = field(default_factory=list)
    buffer: list[BufferedReading] = field(default_factory=list)
    timers: list[tuple[float, str, str]] = field(default_factory=list)
    """(due, sensor id, rule id): heap of pending holds and clears; stale entries are skipped."""
    sensors: set[str] = field(default_factory=set)
    next_scan: float = float("-inf")

    def push_timer(self, due: float, sensor_id: str, rule_id: str) -> None:
        heapq.heappush(self.timers, (due, sensor_id, rule_id))


@dataclass(slots=True)
class Incident:
    """An open incident of a rule: its first sensor and start name its case."""

    rule_id: str
    sensor_id: str
    start: float
    opened: float
    where: tuple[float, float] | None
    members: dict[str, bool] = field(default_factory=dict)
    """Member sensor -> still in alarm."""

    @property
    def key(self) -> tuple[str, float]:
        return (self.sensor_id, self.start)
