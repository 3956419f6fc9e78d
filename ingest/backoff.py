"""Jittered exponential backoff, the one reconnect/retry policy of ingest."""

from __future__ import annotations

import random


class Backoff:
    """Delays that double from ``first`` up to ``cap``, each drawn from [ceiling/2, ceiling]."""

    def __init__(
        self, first: float = 0.5, cap: float = 30.0, rng: random.Random | None = None
    ) -> None:
        self.first, self.cap, self.attempt = first, cap, 0
        self._rng = rng or random.Random()

    def next_delay(self) -> float:
        ceiling = min(self.cap, self.first * 2**self.attempt)
        self.attempt += 1
        return self._rng.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self.attempt = 0
