"""Which batches of a station never arrived: noticed, asked for again, filled or given up.

A station numbers its batches with one ``seq`` that keeps counting across boots (a batch keeps
the boot it was sealed in). Per station the tracker keeps the highest seq seen and the ranges of
seqs below it that have not arrived, each with the time it was first noticed:

- A batch arriving fills its seq (a range shrinks or splits). A gap is only what lies between
  seqs ingest has seen: the first batch of a station, or of a new boot, opens none below it.
- ``due(now)``: a range missing for ``resend_after_s`` is asked for with a ``ResendRequest``
  (contiguous seqs, at most ``MAX_RESEND_BATCHES`` each), again after ``resend_after_s * 2**n``
  while it stays missing, and after ``attempts`` requests it is given up (unrecoverable).
- ``report(GapReport)``: a station says which readings its outbox gave up. Counted once per
  ``(station, boot_epoch, marker_id)``, in readings by reason and per station; the batches
  ``first_seq..last_seq`` it names are closed as lost instead of being asked for.
- ``answer(CommandAck)``: the station's answer to a request; counted by outcome, and the seqs it
  says it never sealed (``unknown``, the top of the requested range) are closed.
- A new boot that starts at or below the high-water mark means the station's numbering started
  again (its outbox store was lost): the station's open ranges are given up and it starts over;
  batches of the boots before that are no longer tracked. A seq more than ``max_missing`` above
  the high-water mark is a jump (renumbered, or nonsense), counted, and opens no gap.
- Bounded: at most ``max_ranges`` ranges and ``max_missing`` seqs per station; the oldest (lowest)
  go first and are counted as unrecoverable.

Pure: no I/O and no clock reads (every call that needs the time gets ``now``). The state is
plain data (``to_dict`` / ``from_dict``), ranges rather than seqs, saved in ingest's checkpoint
with the de-duplication state.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Final, get_args

from protocol import CommandAck, GapReport, ResendRequest
from protocol.models import MAX_RESEND_BATCHES, GapReason

UNRECOVERABLE_REASONS: Final = ("retries", "bounded", "store_reset", "unknown")
"""Why missing batches were given up: asked for ``attempts`` times in vain, pushed out by the
bounds, the station's numbering started again, the station never sealed them."""
ANSWER_OUTCOMES: Final = ("resent", "pending", "expired", "unknown")
LOST_REASONS: Final[tuple[str, ...]] = get_args(GapReason)
RESET_CAUSES: Final = ("store_reset", "jump")


@dataclass(frozen=True, slots=True)
class GapPolicy:
    resend_after_s: float = 10.0
    """A missing range is asked for once it is this old: long enough for QoS 1 redelivery and
    for routine batches that alarm batches overtook."""
    attempts: int = 4
    """Requests for one range before it is given up; the n-th waits ``resend_after_s * 2**n``
    (10 s, then 20, 40, 80, 160: given up about five minutes after it was noticed)."""
    max_ranges: int = 64
    max_missing: int = 100_000
    """Missing seqs tracked per station (ten requests of ``MAX_RESEND_BATCHES``)."""
    reports_kept: int = 64
    """Gap reports remembered per station to recognise one announced again."""

    def __post_init__(self) -> None:
        if self.resend_after_s <= 0 or min(self.attempts, self.max_ranges, self.reports_kept) < 1:
            raise ValueError(f"invalid gap policy {self}")
        if self.max_missing < 1:
            raise ValueError(f"max_missing must be positive, not {self.max_missing}")


@dataclass(slots=True)
class _Range:
    first: int
    last: int
    noticed: float
    """Unix seconds when the range was first noticed missing."""
    due: float
    """Unix seconds when it is asked for next (or given up, after ``attempts`` requests)."""
    asked: int = 0

    @property
    def size(self) -> int:
        return self.last - self.first + 1


@dataclass(slots=True)
class _Station:
    high: int = -1
    """The highest seq seen (or closed by a gap report); -1: no batch seen yet."""
    boot: int = 0
    """The newest boot seen in a batch."""
    since_boot: int = 0
    """The boot the current numbering started in, as far as ingest knows: batches of older
    boots belong to a numbering given up and are not tracked."""
    ranges: list[_Range] = field(default_factory=list)
    """Missing seqs, ascending and disjoint."""
    lost_readings: int = 0
    reports: list[tuple[int, int]] = field(default_factory=list)
    """``(boot_epoch, marker_id)`` of the newest gap reports, oldest first."""
    requests: dict[int, tuple[int, int]] = field(default_factory=dict)
    """Recent requests: id → ``(first_seq, last_seq)``, oldest first."""

    def missing(self) -> int:
        return sum(r.size for r in self.ranges)


def _zeros(names: tuple[str, ...]) -> dict[str, int]:
    return dict.fromkeys(names, 0)


@dataclass(slots=True)
class GapCounts:
    """What happened to gaps since the tracker began (kept in the checkpoint)."""

    requests: int = 0
    """``ResendRequest``s sent."""
    filled: int = 0
    """Missing batches that arrived after they were asked for."""
    reported_lost: int = 0
    """Missing batches closed by a station's gap report."""
    unrecoverable: dict[str, int] = field(default_factory=lambda: _zeros(UNRECOVERABLE_REASONS))
    lost_readings: dict[str, int] = field(default_factory=lambda: _zeros(LOST_REASONS))
    """Readings stations' outboxes gave up, by the reason their gap reports give."""
    reports: dict[str, int] = field(default_factory=lambda: _zeros(("new", "repeat")))
    answers: dict[str, int] = field(default_factory=lambda: _zeros((*ANSWER_OUTCOMES, "stale")))
    """Batches by what the station did with a request; ``stale``: answers to a request the
    tracker no longer knows (answered twice, or older than the requests it keeps)."""
    resets: dict[str, int] = field(default_factory=lambda: _zeros(RESET_CAUSES))


class GapTracker:
    def __init__(self, policy: GapPolicy | None = None) -> None:
        self.policy = policy or GapPolicy()
        self.counts = GapCounts()
        self.next_request_id = 0
        self._stations: dict[str, _Station] = {}

    # -- what the pipeline calls ----------------------------------------------------------

    def saw(self, station_id: str, boot_epoch: int, seq: int, now: datetime) -> None:
        """A batch arrived (not a duplicate)."""
        station = self._stations.get(station_id)
        if station is None:
            station = self._stations[station_id] = _Station()
        if station.high < 0:
            station.high, station.boot, station.since_boot = seq, boot_epoch, boot_epoch
            return
        if boot_epoch < station.since_boot:
            return  # numbered before the station's numbering started again
        if boot_epoch > station.boot:
            if seq <= station.high:  # a newer boot below the mark: numbering started again
                self._reset(station, boot_epoch, seq)
                return
            station.boot = boot_epoch
        if seq > station.high:
            self._advance(station, seq, now.timestamp())
        elif station.ranges:
            self._fill(station, seq)

    def report(self, report: GapReport, now: datetime) -> bool:
        """Apply a gap report; False when it was applied before (counted as a repeat)."""
        station = self._stations.get(report.station_id)
        if station is None:
            station = self._stations[report.station_id] = _Station()
        key = (report.boot_epoch, report.marker_id)
        if key in station.reports:
            self.counts.reports["repeat"] += 1
            return False
        station.reports.append(key)
        del station.reports[: -self.policy.reports_kept]
        self.counts.reports["new"] += 1
        self.counts.lost_readings[report.reason] += report.readings
        station.lost_readings += report.readings
        first, last = report.first_seq, report.last_seq
        if first is None or last is None or station.high < 0:
            return True
        if report.boot_epoch < station.since_boot:
            return True  # seqs of a numbering given up
        if first <= station.high:
            self.counts.reported_lost += self._close(station, first, min(last, station.high))
        if first > station.high + 1:
            self._advance(station, first, now.timestamp())
        station.high = max(station.high, last)
        return True

    def answer(self, ack: CommandAck, now: datetime) -> None:
        """Apply a station's answer to a ``ResendRequest``."""
        station = self._stations.get(ack.station_id)
        span = None if station is None else station.requests.pop(ack.request_id, None)
        answers = self.counts.answers
        if station is None or span is None:
            answers["stale"] += ack.resent + ack.pending + ack.expired + ack.unknown
            return
        answers["resent"] += ack.resent
        answers["pending"] += ack.pending
        answers["expired"] += ack.expired
        answers["unknown"] += ack.unknown
        if ack.unknown:
            first, last = span
            closed = self._close(station, max(first, last - ack.unknown + 1), last)
            self.counts.unrecoverable["unknown"] += closed

    def due(self, now: datetime) -> list[ResendRequest]:
        """The requests to send now; ranges asked for ``attempts`` times in vain are given up.
        Each request returned is counted as sent."""
        at = now.timestamp()
        policy = self.policy
        requests: list[ResendRequest] = []
        for station_id, station in self._stations.items():
            if not station.ranges or min(r.due for r in station.ranges) > at:
                continue
            kept: list[_Range] = []
            for missing in station.ranges:
                if missing.due > at:
                    kept.append(missing)
                    continue
                if missing.asked >= policy.attempts:
                    self.counts.unrecoverable["retries"] += missing.size
                    continue
                for first in range(missing.first, missing.last + 1, MAX_RESEND_BATCHES):
                    last = min(missing.last, first + MAX_RESEND_BATCHES - 1)
                    requests.append(self._request(station_id, station, first, last, at))
                missing.asked += 1
                missing.due = at + policy.resend_after_s * 2**missing.asked
                kept.append(missing)
            station.ranges = kept
        self.counts.requests += len(requests)
        return requests

    def postpone(self, seconds: float) -> None:
        """Move every request and give-up ``seconds`` later (ingest was stalled: what the broker
        held meanwhile may fill the gaps)."""
        for station in self._stations.values():
            for missing in station.ranges:
                missing.due += seconds

    # -- what metrics and the registry read -------------------------------------------------

    def open_batches(self) -> int:
        return sum(s.missing() for s in self._stations.values())

    def open_by_station(self) -> dict[str, int]:
        return {sid: n for sid, s in self._stations.items() if (n := s.missing())}

    def open_ranges(self, station_id: str) -> list[tuple[int, int]]:
        station = self._stations.get(station_id)
        return [] if station is None else [(r.first, r.last) for r in station.ranges]

    def lost_readings(self, station_id: str) -> int:
        """Readings the station's gap reports said its outbox gave up."""
        station = self._stations.get(station_id)
        return 0 if station is None else station.lost_readings

    # -- internals ------------------------------------------------------------------------

    def _advance(self, station: _Station, seq: int, at: float) -> None:
        """``seq`` above the high-water mark: what lies between is missing."""
        skipped = seq - station.high - 1
        if skipped > self.policy.max_missing:
            self.counts.resets["jump"] += 1
        elif skipped:
            due = at + self.policy.resend_after_s
            station.ranges.append(_Range(station.high + 1, seq - 1, at, due))
            self._bound(station)
        station.high = seq

    def _fill(self, station: _Station, seq: int) -> None:
        ranges = station.ranges
        index = bisect_right(ranges, seq, key=lambda r: r.first) - 1
        if index < 0 or ranges[index].last < seq:
            return  # not missing: seen already, or never tracked
        missing = ranges[index]
        if missing.asked:
            self.counts.filled += 1
        if missing.first == missing.last:
            del ranges[index]
        elif seq == missing.first:
            missing.first += 1
        elif seq == missing.last:
            missing.last -= 1
        else:
            ranges.insert(index + 1, replace(missing, first=seq + 1))
            missing.last = seq - 1
            self._bound(station)

    def _close(self, station: _Station, first: int, last: int) -> int:
        """Take ``first..last`` out of the missing ranges; returns how many seqs were missing."""
        kept: list[_Range] = []
        closed = 0
        for missing in station.ranges:
            if missing.last < first or missing.first > last:
                kept.append(missing)
                continue
            closed += min(missing.last, last) - max(missing.first, first) + 1
            if missing.first < first:
                kept.append(replace(missing, last=first - 1))
            if missing.last > last:
                kept.append(replace(missing, first=last + 1))
        station.ranges = kept
        return closed

    def _bound(self, station: _Station) -> None:
        ranges, policy = station.ranges, self.policy
        dropped = 0
        while len(ranges) > policy.max_ranges:
            dropped += ranges.pop(0).size
        excess = station.missing() - policy.max_missing
        while excess > 0:
            oldest = ranges[0]
            if oldest.size <= excess:
                ranges.pop(0)
                dropped, excess = dropped + oldest.size, excess - oldest.size
            else:
                oldest.first += excess
                dropped, excess = dropped + excess, 0
        self.counts.unrecoverable["bounded"] += dropped

    def _reset(self, station: _Station, boot_epoch: int, seq: int) -> None:
        self.counts.resets["store_reset"] += 1
        self.counts.unrecoverable["store_reset"] += station.missing()
        station.ranges = []
        station.requests.clear()
        station.high, station.boot, station.since_boot = seq, boot_epoch, boot_epoch

    def _request(
        self, station_id: str, station: _Station, first: int, last: int, at: float
    ) -> ResendRequest:
        # ids from the clock (microseconds) as well as a counter: unique across restarts
        request_id = max(self.next_request_id, int(at * 1_000_000))
        self.next_request_id = request_id + 1
        station.requests[request_id] = (first, last)
        while len(station.requests) > self.policy.max_ranges * self.policy.attempts:
            del station.requests[next(iter(station.requests))]
        return ResendRequest(
            station_id=station_id, request_id=request_id, first_seq=first, last_seq=last
        )

    # -- the checkpoint ---------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        counts = self.counts
        return {
            "next_request_id": self.next_request_id,
            "counts": {
                "requests": counts.requests,
                "filled": counts.filled,
                "reported_lost": counts.reported_lost,
                "unrecoverable": counts.unrecoverable,
                "lost_readings": counts.lost_readings,
                "reports": counts.reports,
                "answers": counts.answers,
                "resets": counts.resets,
            },
            "stations": {
                station_id: {
                    "high": s.high,
                    "boot": s.boot,
                    "since_boot": s.since_boot,
                    "lost_readings": s.lost_readings,
                    "ranges": [[r.first, r.last, r.noticed, r.due, r.asked] for r in s.ranges],
                    "reports": [list(key) for key in s.reports],
                    "requests": [[rid, first, last] for rid, (first, last) in s.requests.items()],
                }
                for station_id, s in self._stations.items()
            },
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], policy: GapPolicy | None = None) -> GapTracker:
        tracker = cls(policy)
        tracker.next_request_id = int(data["next_request_id"])
        counts, saved = tracker.counts, data["counts"]
        counts.requests = int(saved["requests"])
        counts.filled = int(saved["filled"])
        counts.reported_lost = int(saved["reported_lost"])
        for name in ("unrecoverable", "lost_readings", "reports", "answers", "resets"):
            getattr(counts, name).update({str(k): int(v) for k, v in saved[name].items()})
        for station_id, s in data["stations"].items():
            station = tracker._stations[str(station_id)] = _Station(
                high=int(s["high"]),
                boot=int(s["boot"]),
                since_boot=int(s["since_boot"]),
                lost_readings=int(s["lost_readings"]),
                ranges=[
                    _Range(int(first), int(last), float(noticed), float(due), int(asked))
                    for first, last, noticed, due, asked in s["ranges"]
                ],
                reports=[(int(boot), int(marker)) for boot, marker in s["reports"]],
                requests={int(rid): (int(first), int(last)) for rid, first, last in s["requests"]},
            )
            tracker._bound(station)  # a smaller policy than the one that saved it
        return tracker
