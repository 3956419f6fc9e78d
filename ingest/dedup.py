"""De-duplication of telemetry batches by (station, boot epoch, sequence number).

Per station and boot the deduplicator keeps the highest sequence seen and a bitmask of which of
the ``window`` sequences below it were seen: a few dozen bytes per station however long it runs.
A sequence older than the window cannot be checked any more: it is accepted and counted as
``unverifiable`` (an edge outbox that old has long been re-sent or lost). Sequences skipped over
are counted as gaps per station (the edge re-sends them, or they were lost); a gap filled later
is taken off again. The state is plain data (``to_dict`` / ``from_dict``), saved with the rules
engine's snapshot so a restart does not take a re-sent batch twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

BOOTS_KEPT = 4
DEFAULT_WINDOW = 4096


@dataclass(slots=True)
class _BootWindow:
    high: int = -1
    seen: int = 0
    """Bit ``i`` set: sequence ``high - i`` was seen (bit 0 is ``high`` itself)."""


@dataclass(slots=True)
class StationSequence:
    boots: dict[int, _BootWindow] = field(default_factory=dict)
    gaps: int = 0
    """Sequences skipped over and not (yet) filled, over this station's kept boots."""


class Deduplicator:
    def __init__(self, window: int = DEFAULT_WINDOW) -> None:
        if window < 1:
            raise ValueError(f"window must be positive, not {window}")
        self.window = window
        self.unverifiable = 0
        self._stations: dict[str, StationSequence] = {}

    def seen(self, station_id: str, boot_epoch: int, seq: int) -> bool:
        """Whether this batch was taken before (without remembering it)."""
        station = self._stations.get(station_id)
        boot = station.boots.get(boot_epoch) if station is not None else None
        if boot is None or seq > boot.high:
            return False
        age = boot.high - seq
        return age < self.window and bool(boot.seen >> age & 1)

    def first_time(self, station_id: str, boot_epoch: int, seq: int) -> bool:
        """True when this batch was not seen before (and remember it)."""
        if self.seen(station_id, boot_epoch, seq):
            return False
        self.remember(station_id, boot_epoch, seq)
        return True

    def remember(self, station_id: str, boot_epoch: int, seq: int) -> None:
        station = self._stations.get(station_id)
        if station is None:
            station = self._stations[station_id] = StationSequence()
        boot = station.boots.get(boot_epoch)
        if boot is None:
            boot = station.boots[boot_epoch] = _BootWindow()
            if len(station.boots) > BOOTS_KEPT:
                del station.boots[min(station.boots)]  # the oldest boot
        if seq > boot.high:
            if boot.high >= 0:  # counted from the first batch of the boot this ingest saw
                station.gaps += min(seq - boot.high - 1, self.window)
            shift = seq - boot.high
            boot.seen = ((boot.seen << shift) | 1) & ((1 << self.window) - 1)
            boot.high = seq
            return
        age = boot.high - seq
        if age >= self.window:
            self.unverifiable += 1
            return
        boot.seen |= 1 << age
        station.gaps = max(0, station.gaps - 1)  # a gap filled (a re-sent batch arrived)

    def gaps(self) -> dict[str, int]:
        """Missing sequence numbers per station (over the kept boots)."""
        return {station_id: s.gaps for station_id, s in self._stations.items() if s.gaps}

    def to_dict(self) -> dict[str, Any]:
        return {
            "window": self.window,
            "unverifiable": self.unverifiable,
            "stations": {
                station_id: {
                    "gaps": s.gaps,
                    "boots": [[b, w.high, format(w.seen, "x")] for b, w in s.boots.items()],
                }
                for station_id, s in self._stations.items()
            },
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Deduplicator:
        dedup = cls(int(data["window"]))
        dedup.unverifiable = int(data["unverifiable"])
        for station_id, s in data["stations"].items():
            station = dedup._stations[station_id] = StationSequence(gaps=int(s["gaps"]))
            for boot, high, seen in s["boots"]:
                station.boots[int(boot)] = _BootWindow(int(high), int(seen, 16))
        return dedup
