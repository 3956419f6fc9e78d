"""De-duplication of telemetry batches by (station, boot epoch, sequence number).

Per station and boot the deduplicator keeps the highest sequence seen and a bitmask of which of
the ``window`` sequences below it were seen: a few dozen bytes per boot however long it runs.
A sequence older than the window cannot be checked any more: it is accepted and counted as
``unverifiable`` (an edge outbox that old has long been re-sent or lost). The newest
``BOOTS_KEPT`` boots of a station are kept: a batch keeps the boot it was sealed in, so after a
crash loop re-sent batches of several boots may still be on their way. Which sequences never
arrived is the gap tracker's business (``ingest/gaps.py``: seq counts across boots). The state is
plain data (``to_dict`` / ``from_dict``), saved in ingest's checkpoint so a restart does not take
a re-sent batch twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

BOOTS_KEPT = 16
DEFAULT_WINDOW = 4096


@dataclass(slots=True)
class _BootWindow:
    high: int = -1
    seen: int = 0
    """Bit ``i`` set: sequence ``high - i`` was seen (bit 0 is ``high`` itself)."""


@dataclass(slots=True)
class StationSequence:
    boots: dict[int, _BootWindow] = field(default_factory=dict)


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
        if seq > boot.high:  # the first batch of a boot may have any seq: it counts on
            shift = seq - boot.high  # a jump past the window forgets it (no 2**63-bit shift)
            kept = boot.seen << shift if shift < self.window else 0
            boot.seen = (kept | 1) & ((1 << self.window) - 1)
            boot.high = seq
            return
        age = boot.high - seq
        if age >= self.window:
            self.unverifiable += 1
            return
        boot.seen |= 1 << age

    def to_dict(self) -> dict[str, Any]:
        return {
            "window": self.window,
            "unverifiable": self.unverifiable,
            "stations": {
                station_id: {
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
            station = dedup._stations[station_id] = StationSequence()
            for boot, high, seen in s["boots"]:
                station.boots[int(boot)] = _BootWindow(int(high), int(seen, 16))
        return dedup
