"""Jittered exponential backoff: the one reconnect/retry policy of every MQTT client here."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    """Delays that double from ``initial`` up to ``maximum``, each drawn from its upper half.

    The jitter keeps a city's stations from reconnecting in lock-step after a broker restart.
    """

    initial: float = 0.5
    maximum: float = 30.0
    factor: float = 2.0
    rng: random.Random = field(default_factory=random.Random, repr=False)
    _ceiling: float = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not 0 < self.initial <= self.maximum or self.factor < 1:
            raise ValueError(f"bad backoff {self.initial=} {self.maximum=} {self.factor=}")
        self._ceiling = self.initial

    def next_delay(self) -> float:
        delay = self.rng.uniform(self._ceiling / 2, self._ceiling)
        self._ceiling = min(self._ceiling * self.factor, self.maximum)
        return delay

    def reset(self) -> None:
        self._ceiling = self.initial
