"""Failed sign-ins counted per user name and per client address, in memory.

A name or an address with ``limit`` failures within ``window_s`` is refused, without checking the
password, until its oldest failure leaves the window: an attacker gets a handful of guesses per
name every few minutes, whatever number of addresses they have, and one address gets a few
dozen across all names. A success clears the name's failures (not the address's: one valid
account must not reset a guesser's count). Per process, lost on restart; the number of names and
addresses remembered is bounded (the longest-quiet ones are forgotten first).
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable


class FailureWindow:
    """Failure times per key within a sliding window, for at most ``max_keys`` keys."""

    def __init__(
        self, limit: int, window_s: float, clock: Callable[[], float], max_keys: int = 10_000
    ) -> None:
        self.limit = limit
        self.window_s = window_s
        self.clock = clock
        self.max_keys = max_keys
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, key: str, now: float) -> deque[float] | None:
        failures = self._failures.get(key)
        if failures is None:
            return None
        while failures and failures[0] <= now - self.window_s:
            failures.popleft()
        if not failures:
            del self._failures[key]
            return None
        return failures

    def retry_after(self, key: str) -> float | None:
        """Seconds until ``key`` may try again, or ``None``: it may now."""
        now = self.clock()
        failures = self._recent(key, now)
        if failures is None or len(failures) < self.limit:
            return None
        return max(failures[-self.limit] + self.window_s - now, 0.001)

    def fail(self, key: str) -> None:
        now = self.clock()
        failures = self._recent(key, now) or deque(maxlen=self.limit)
        failures.append(now)
        self._failures[key] = failures
        self._failures.move_to_end(key)
        while len(self._failures) > self.max_keys:
            self._failures.popitem(last=False)

    def clear(self, key: str) -> None:
        self._failures.pop(key, None)


class SignInLimiter:
    def __init__(
        self,
        *,
        per_name: int = 5,
        per_address: int = 20,
        window_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.names = FailureWindow(per_name, window_s, clock)
        self.addresses = FailureWindow(per_address, window_s, clock)

    def retry_after(self, name: str, address: str) -> float | None:
        """Seconds to wait before this name may be tried from this address, or ``None``."""
        waits = [
            wait
            for wait in (
                self.names.retry_after(name.casefold()),
                self.addresses.retry_after(address),
            )
            if wait is not None
        ]
        return max(waits) if waits else None

    def failed(self, name: str, address: str) -> None:
        self.names.fail(name.casefold())
        self.addresses.fail(address)

    def succeeded(self, name: str) -> None:
        self.names.clear(name.casefold())
