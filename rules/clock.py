"""Device clocks checked against the edge's clock, and the station watermark they give.

Each batch carries ``sent_at`` (the edge clock). For the freshest reading of a batch,
``sent_at - ts`` is normally between zero and the batch interval. A station whose recent batches
all show a larger gap, or a negative one (readings from the future), has device clocks that are
off by that offset (a slow clock only once three batches agree: one old batch is more likely a
backlog): its readings are shifted by it and flagged ``clock_skew``. A reading stamped
before the station's birth or further than ``max_clock_error`` from the edge clock (a clock reset
to 2000-01-01, a reading stamped 2099) cannot be placed by an offset: it is flagged
``clock_reset`` and evaluated at its arrival time, keeping its spacing to the batch's other
reset readings.

The watermark is the station's event-time "now": the edge clock when the batch is live (its
freshest reading is recent), else the freshest reading (a backlog drained after an outage must
not run timers ahead of data still to come).
"""

from __future__ import annotations

from dataclasses import dataclass

from rules.state import StationState
from rules.stats import EngineStats

OFFSET_BATCHES = 8
BEHIND_EVIDENCE = 3
"""Batches that must all look behind before a slow clock is assumed: one old batch is more
likely a backlog than a slow clock. Readings from the future need no such evidence."""


@dataclass(frozen=True, slots=True)
class ClockPolicy:
    allowed_lateness: float = 6.0
    """Seconds a reading may arrive after the watermark passed it and still be evaluated in order:
    a little more than the edge's batch interval (5 s), so one batch overtaken by the next is
    put back in order. It delays alerts in wall time by as much, never in event time."""
    ahead_tolerance: float = 2.0
    """Readings this far ahead of the edge clock are taken as a fast device clock."""
    behind_tolerance: float = 120.0
    """Every recent batch this far behind the edge clock: a slow device clock (a backlog or a
    slow batch interval shows a smaller gap in at least one recent batch)."""
    max_clock_error: float = 86_400.0
    """Further from the edge clock than this: a reset clock, not a skewed one."""
    live_within: float = 30.0
    """A batch whose freshest reading is this recent moves the watermark to its ``sent_at``."""
    birth_slack: float = 60.0


Row = tuple[float, str, str, dict[str, float]]
Checked = tuple[float, str, str, dict[str, float], tuple[str, ...]]


@dataclass(frozen=True, slots=True)
class ClockResult:
    readings: list[Checked]
    watermark: float


def check_clock(
    station: StationState,
    rows: list[Row],
    sent_at: float,
    policy: ClockPolicy,
    stats: EngineStats,
) -> ClockResult:
    limit, born = policy.max_clock_error, station.born

    def is_reset(t: float) -> bool:
        return abs(t - sent_at) > limit or t < born

    times = [row[0] for row in rows]
    newest = max(times)
    if not (is_reset(min(times)) or is_reset(newest)):  # monotonic in t: then none is
        good, reset = rows, []
    else:
        reset = [row for row in rows if is_reset(row[0])]
        good = [row for row in rows if not is_reset(row[0])]
        newest = max((row[0] for row in good), default=newest)
    correction = 0.0
    if good:
        station.offsets = [*station.offsets, sent_at - newest][-OFFSET_BATCHES:]
        offset = min(station.offsets)
        if offset < -policy.ahead_tolerance or (
            offset > policy.behind_tolerance and len(station.offsets) >= BEHIND_EVIDENCE
        ):
            correction = offset
    out: list[Checked] = []
    if correction:
        stats.clock_skew_corrected += len(good)
        out.extend((t + correction, s, k, v, ("clock_skew",)) for t, s, k, v in good)
    else:
        out.extend((t, s, k, v, ()) for t, s, k, v in good)
    if reset:
        stats.clock_reset_flagged += len(reset)
        anchor = max(row[0] for row in reset)
        out.extend((sent_at - (anchor - t), s, k, v, ("clock_reset",)) for t, s, k, v in reset)
        newest = max(row[0] for row in out)
    else:
        newest += correction  # the newest of ``out``: adding is monotonic
    watermark = max(newest, sent_at) if sent_at - newest <= policy.live_within else newest
    return ClockResult(out, watermark)
