"""The agent's outbox: readings wait here until the broker acknowledged the batch carrying them.

Readings are sealed into numbered batches in arrival order. A sealed batch is re-sent unchanged
(same ``seq``, same readings) until it is acknowledged, so ingest can drop a re-sent batch by
``(station, boot epoch, seq)`` without losing anything. When the outbox is full the oldest
unsealed readings are evicted and counted.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from protocol import Reading


@dataclass(frozen=True, slots=True)
class SealedBatch:
    seq: int
    readings: tuple[Reading, ...]


class MemoryOutbox:
    """A bounded in-memory outbox; lost when the agent stops (a disk outbox comes later)."""

    def __init__(self, capacity: int, max_batch: int) -> None:
        if not 1 <= max_batch <= capacity:
            raise ValueError(f"need 1 <= max_batch ({max_batch}) <= capacity ({capacity})")
        self.capacity = capacity
        self.max_batch = max_batch
        self.dropped = 0
        self._waiting: deque[Reading] = deque()
        self._sealed: SealedBatch | None = None
        self._next_seq = 0

    def __len__(self) -> int:
        sealed = len(self._sealed.readings) if self._sealed else 0
        return sealed + len(self._waiting)

    def put(self, readings: Iterable[Reading]) -> int:
        """Add readings; returns how many old readings were evicted to make room."""
        self._waiting.extend(readings)
        evicted = max(0, len(self) - self.capacity)
        for _ in range(evicted):
            self._waiting.popleft()
        self.dropped += evicted
        return evicted

    def next_batch(self) -> SealedBatch | None:
        """The oldest unacknowledged batch, sealing one if needed; None when empty."""
        if self._sealed is None and self._waiting:
            count = min(self.max_batch, len(self._waiting))
            readings = tuple(self._waiting.popleft() for _ in range(count))
            self._sealed = SealedBatch(self._next_seq, readings)
            self._next_seq += 1
        return self._sealed

    def ack(self, seq: int) -> None:
        """The broker acknowledged batch ``seq``: forget its readings."""
        if self._sealed is None or self._sealed.seq != seq:
            raise ValueError(f"batch {seq} is not the one in flight")
        self._sealed = None
