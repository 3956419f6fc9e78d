"""Shadow mode: a candidate rule set evaluated beside the live one on live traffic, opening no case.

The shadow engine starts from a snapshot of the live engine under the candidate rules (so a hold
that is pending now is pending in the shadow too) and then sees every batch and birth the live
engine sees, right after it. Its alerts go nowhere but here: they are compared with the live
engine's, per rule and sensor, and the report says what the candidate would have opened that the
live rules did not, what it would have missed, and, for what both opened, how much earlier or
later. A failure inside the shadow stops the shadow (logged), never the live pipeline.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from protocol import ReadingView
from rules import Alert, RuleEngine, RuleSet
from rules.snapshot import restore, snapshot

log = logging.getLogger(__name__)

MATCH_WITHIN = timedelta(minutes=10)
"""A live and a shadow opening of the same rule on the same sensor this close are one incident."""
KEPT = 1000
"""Openings kept per side (the oldest go first); the counts keep counting."""


def _opening(alert: Alert) -> dict[str, Any]:
    return {
        "rule_id": alert.rule_id,
        "sensor_id": alert.sensor_id,
        "station_id": alert.station_id,
        "severity": alert.severity,
        "started_at": alert.started_at.isoformat(),
        "opened_at": alert.at.isoformat(),
        "value": alert.value,
        "threshold": alert.threshold,
    }


@dataclass
class Shadow:
    rules: RuleSet
    engine: RuleEngine
    version: str
    """What the candidate is (its SHA-256), for the report."""
    author: str
    since: datetime
    live: deque[Alert] = field(default_factory=lambda: deque(maxlen=KEPT))
    shadow: deque[Alert] = field(default_factory=lambda: deque(maxlen=KEPT))
    live_opened: int = 0
    shadow_opened: int = 0
    batches: int = 0
    failed: str | None = None

    @classmethod
    def start(
        cls, rules: RuleSet, live: RuleEngine, version: str, author: str, now: datetime
    ) -> Shadow:
        engine = restore(
            rules,
            snapshot(live),
            locate=live.groups.locate,
            clock=live.clock_policy,
            district_of=live.district_of,
        )
        return cls(rules, engine, version, author, now)

    def note_birth(self, station_id: str, ts: datetime) -> None:
        if self.failed is None:
            try:
                self.engine.note_birth(station_id, ts)
            except Exception as exc:  # the shadow must never stop the live pipeline
                self._fail(exc)

    def observe(
        self,
        station_id: str,
        readings: Sequence[ReadingView],
        sent_at: datetime | None,
        live: Iterable[Alert],
    ) -> None:
        """The batch the live engine just processed, and what it opened or cleared."""
        if self.failed is not None:
            return
        opened = [a for a in live if a.state == "open"]
        self.live_opened += len(opened)
        self.live.extend(opened)
        try:
            alerts = self.engine.process(station_id, readings, sent_at)
        except Exception as exc:  # the shadow must never stop the live pipeline
            self._fail(exc)
            return
        self.batches += 1
        mine = [a for a in alerts if a.state == "open"]
        self.shadow_opened += len(mine)
        self.shadow.extend(mine)

    def _fail(self, exc: Exception) -> None:
        log.exception("shadow rules %s stopped", self.version[:12])
        self.failed = f"{type(exc).__name__}: {exc}"

    def report(self) -> dict[str, Any]:
        """Openings matched per (rule, sensor) within ``MATCH_WITHIN`` of each other."""
        unmatched = list(self.shadow)
        both, only_live = [], []
        for live in self.live:
            twin = next(
                (
                    s
                    for s in unmatched
                    if (s.rule_id, s.sensor_id) == (live.rule_id, live.sensor_id)
                    and abs(s.started_at - live.started_at) <= MATCH_WITHIN
                ),
                None,
            )
            if twin is None:
                only_live.append(_opening(live))
                continue
            unmatched.remove(twin)
            both.append(
                _opening(live)
                | {
                    "shadow_opened_at": twin.at.isoformat(),
                    "shadow_earlier_s": (live.at - twin.at).total_seconds(),
                }
            )
        return {
            "version": self.version,
            "author": self.author,
            "since": self.since.isoformat(),
            "batches": self.batches,
            "live_opened": self.live_opened,
            "shadow_opened": self.shadow_opened,
            "only_shadow": [_opening(a) for a in unmatched],
            "only_live": only_live,
            "both": both,
            "failed": self.failed,
        }
