"""What the engine counts: every skipped, corrected or flagged reading has a counter."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class EngineStats:
    readings_evaluated: int = 0
    missing_field: int = 0
    """Readings of a rule's kind that lack a value the rule reads: not evaluated by that rule."""
    unknown_value: int = 0
    """Readings carrying a value name their kind does not have (evaluated on the known ones)."""
    late_evaluated: int = 0
    """Readings later than the allowed lateness that were still newer than their sensor's last
    evaluated reading: evaluated on arrival, flagged ``late``."""
    late_skipped: int = 0
    """Readings older than one already evaluated for the same sensor: kept for the record by
    ingest's sinks, not evaluated."""
    clock_skew_corrected: int = 0
    """Readings whose device clock was off by the offset its station's batches show: shifted."""
    clock_reset_flagged: int = 0
    """Readings stamped before the station's birth or years off: evaluated at arrival time."""
    flapping: int = 0
    """Openings suppressed because the condition flaps: the last case was re-opened instead."""
    grouped: int = 0
    """Alerts that joined an open incident as members instead of opening cases of their own."""
    dropped_tracks: int = 0
    """Pending or open state of rules no longer in the rule set, dropped on restore."""
    buffered: int = 0
    """Readings waiting in reorder buffers for the allowed lateness (a gauge)."""
    transitions: dict[str, int] = field(default_factory=dict)

    def counters(self) -> dict[str, int]:
        return {
            name: getattr(self, name)
            for name in (
                "readings_evaluated",
                "missing_field",
                "unknown_value",
                "late_evaluated",
                "late_skipped",
                "clock_skew_corrected",
                "clock_reset_flagged",
                "flapping",
                "grouped",
                "dropped_tracks",
            )
        }
