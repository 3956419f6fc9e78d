"""De-duplication of telemetry batches by (station, boot epoch, sequence number).

Per station and boot the deduplicator keeps the highest sequence seen and the set of sequences
within ``window`` below it. A sequence older than the window cannot be checked any more: it is
accepted and counted as ``unverifiable`` (an edge outbox that old has long been re-sent or lost).
"""

from __future__ import annotations

from dataclasses import dataclass, field

BOOTS_KEPT = 4


@dataclass(slots=True)
class _BootWindow:
    high: int = -1
    seen: set[int] = field(default_factory=set)


class Deduplicator:
    def __init__(self, window: int = 65_536) -> None:
        self.window = window
        self.unverifiable = 0
        self._stations: dict[str, dict[int, _BootWindow]] = {}

    def first_time(self, station_id: str, boot_epoch: int, seq: int) -> bool:
        """True when this batch was not seen before (and remember it)."""
        boots = self._stations.setdefault(station_id, {})
        boot = boots.get(boot_epoch)
        if boot is None:
            boot = boots[boot_epoch] = _BootWindow()
            if len(boots) > BOOTS_KEPT:
                del boots[next(iter(boots))]  # the oldest boot seen
        if seq <= boot.high - self.window:
            self.unverifiable += 1
            return True
        if seq in boot.seen:
            return False
        boot.seen.add(seq)
        if seq > boot.high:
            boot.high = seq
            floor = seq - self.window
            if len(boot.seen) > 2 * self.window:
                boot.seen = {s for s in boot.seen if s > floor}
        return True
