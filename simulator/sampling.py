"""One simulated device in simulated time: its physics, the incidents that touch it, its
reporting policy, and the moments it must be sampled at.

A battery device reports on its heartbeat and when a value crosses one of its alarm
thresholds. Values can only cross a threshold inside scheduled events (a vehicle over the
cover, a gust on the pole: ``SensorModel.busy``) or incidents, so between them the device is
sampled only when a report falls due (and, for a drop alarm's baseline, every
``BASELINE_SAMPLE_S``); inside them, at every tick. Whatever is skipped could not have been
reported: the readings are those of sampling every tick, with other measurement noise.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from protocol import Reading, SensorInfo
from simulator.incident_base import Incident
from simulator.physics import SensorModel
from simulator.reporting import Reporter, ReportPolicy, micros

Effect = Callable[[str, dict[str, float], datetime], dict[str, float]]
"""How an incident changes one sensor's values: ``(sensor_id, values, ts) -> values``."""
Sample = tuple[int, dict[str, float]]
"""A sample: microseconds since the epoch and the values read."""

BASELINE_SAMPLE_S = 30.0
"""How often a device with a drop alarm samples in quiet times to keep its baseline."""
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def utc_from_us(t_us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=t_us)


@dataclass(frozen=True, slots=True)
class Ticks:
    """The simulation's sample grid: tick ``k`` is at ``start_us + k * step_us``."""

    start_us: int
    step_us: int

    def at(self, k: int) -> int:
        return self.start_us + k * self.step_us

    def first_at_or_after(self, t_us: int) -> int:
        """The first tick at or after ``t_us``."""
        return -((self.start_us - t_us) // self.step_us)


@dataclass(frozen=True, slots=True)
class Touch:
    """An incident touching this device, with its window when the incident has one."""

    incident: Incident
    effect: Effect
    window: tuple[int, int] | None

    def active(self, t_us: int, ts: datetime) -> bool:
        if self.window is None:
            return self.incident.active(ts)
        return self.window[0] <= t_us < self.window[1]


class SimulatedSensor:
    """A sensor's physics, incidents and reporting state."""

    def __init__(self, info: SensorInfo, model: SensorModel, policy: ReportPolicy) -> None:
        self.info = info
        self.model = model
        self.reporter = Reporter(policy)
        self.touches: list[Touch] = []

    def touch(self, incident: Incident, effect: Effect) -> None:
        start, end = getattr(incident, "start", None), getattr(incident, "end", None)
        window = None
        if isinstance(start, datetime) and isinstance(end, datetime):
            window = (micros(start), micros(end))
        self.touches.append(Touch(incident, effect, window))

    def values_at(self, t_us: int, ts: datetime | None = None) -> dict[str, float]:
        """What the sensor reads at ``t_us``, incidents included."""
        values = self.model.sample_at(t_us / 1e6)
        for touch in self.touches:
            ts = ts or utc_from_us(t_us)
            if touch.active(t_us, ts):
                values = touch.effect(self.info.sensor_id, values, ts)
        return values

    def reading(self, t_us: int, values: dict[str, float], ts: datetime | None = None) -> Reading:
        return Reading.model_construct(
            sensor_id=self.info.sensor_id,
            kind=self.info.kind,
            ts=ts or utc_from_us(t_us),
            values=values,
        )

    def reports(self, ticks: Ticks, first: int, stop: int) -> list[Sample]:
        """The samples the device reports at ticks ``first`` .. ``stop - 1``."""
        busy = self._busy(ticks, first, stop)
        reporter = self.reporter
        baseline_every = 0
        if reporter.policy.tracks_baseline:
            baseline_every = max(1, round(BASELINE_SAMPLE_S * 1e6 / ticks.step_us))
        out: list[Sample] = []
        k, index = first, 0
        while k < stop:
            while index < len(busy) and busy[index][1] <= k:
                index += 1
            in_busy = index < len(busy) and busy[index][0] <= k
            due = reporter.next_due_us()
            if not in_busy and not reporter.abnormal and due is not None:
                wake = ticks.first_at_or_after(due)
                if baseline_every:
                    wake = min(wake, -(-k // baseline_every) * baseline_every)
                if index < len(busy):
                    wake = min(wake, busy[index][0])
                k = max(k, wake)
                if k >= stop:
                    break
            t_us = ticks.at(k)
            values = self.values_at(t_us)
            if reporter.offer_us(t_us, values):
                out.append((t_us, values))
            k += 1
        return out

    def _busy(self, ticks: Ticks, first: int, stop: int) -> list[tuple[int, int]]:
        """Tick ranges [a, b) to sample in full: scheduled events and incidents, each with
        the tick after it (the recovery report)."""
        t0, t1 = ticks.at(first), ticks.at(stop)
        spans = [(round(s * 1e6), round(e * 1e6)) for s, e in self.model.busy(t0 / 1e6, t1 / 1e6)]
        for touch in self.touches:
            window = touch.window or (t0, t1)
            if window[0] < t1 and window[1] > t0:
                spans.append(window)
        ranges = sorted(
            (ticks.first_at_or_after(s), ticks.first_at_or_after(e) + 1) for s, e in spans
        )
        merged: list[tuple[int, int]] = []
        for a, b in ranges:
            if merged and a <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(b, merged[-1][1]))
            else:
                merged.append((a, b))
        return merged
