"""Credentials that worked lately, to keep answering while the database is down.

Every request looks its credential up in the database (a revoked token stops at once). When
the database fails, a credential that was checked within ``keep_for`` still passes: ``/metrics``
and the dashboard keep working through a database outage (when they matter most), while new
sign-ins, and credentials not seen lately, get 503. Forgotten when the database says the
credential is gone, and when this process revokes it, signs it out or disables its user.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime, timedelta

from center.auth.roles import Principal

DEFAULT_KEEP_FOR = timedelta(minutes=10)


class RecentPrincipals:
    def __init__(
        self,
        clock: Callable[[], datetime],
        keep_for: timedelta = DEFAULT_KEEP_FOR,
        max_entries: int = 10_000,
    ) -> None:
        self.clock = clock
        self.keep_for = keep_for
        self.max_entries = max_entries
        self._seen: OrderedDict[str, tuple[Principal, datetime]] = OrderedDict()

    def remember(self, key: str, principal: Principal) -> None:
        self._seen[key] = (principal, self.clock())
        self._seen.move_to_end(key)
        while len(self._seen) > self.max_entries:
            self._seen.popitem(last=False)

    def forget(self, key: str) -> None:
        self._seen.pop(key, None)

    def forget_where(self, matches: Callable[[Principal], bool]) -> None:
        for key in [key for key, (principal, _) in self._seen.items() if matches(principal)]:
            del self._seen[key]

    def recall(self, key: str) -> Principal | None:
        """The principal checked within ``keep_for`` (and, a session, not expired since)."""
        found = self._seen.get(key)
        if found is None:
            return None
        principal, checked = found
        now = self.clock()
        expired = principal.expires_at is not None and principal.expires_at <= now
        if now - checked > self.keep_for or expired:
            return None
        return principal
