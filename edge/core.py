"""What an edge agent decides, without I/O: which readings are urgent, what goes into the
outbox with which priority, and the bytes of every message it publishes.

``EdgeAgent`` runs this on a real clock and a real MQTT session; the simulator's scenario runner
(``simulator.run``) runs the same code on simulated time, so every scenario exercises the real
outbox, sequence numbers and alarm priority.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from edge.outbox import GapMarker, Outbox, Priority, Resend, SealedBatch
from protocol import CommandAck, GapReport, Reading, ResendRequest, encode
from rules import ClockPolicy, RuleEngine, RuleSet
from rules.state import IDLE

log = logging.getLogger(__name__)

EXPIRED_MARKERS = 1 << 63
"""Gap markers from here up answer re-send requests (``EXPIRED_MARKERS + request_id * 1024 + k``
for the request's k-th expired range): a repeated request names the same loss."""


@dataclass(slots=True)
class EdgeStats:
    readings_sampled: int = 0
    batches_published: int = 0
    dropped_readings: int = 0
    """Readings evicted from a full outbox before they could be sent."""
    alarm_readings: int = 0
    """Readings put with alarm priority (their sensor was in alarm at the edge)."""
    gap_reports: int = 0
    resend_requests: int = 0
    batches_resent: int = 0
    bad_commands: int = 0
    configs_applied: int = 0
    configs_rejected: int = 0
    holds: int = 0
    """Times the agent held its data because ingest said it was away."""
    connects: int = 0
    link_failures: int = 0


class EdgeCore:
    """One station's decisions. ``put`` and the outbox calls may run on another thread than
    ``in_alarm`` (the agent's outbox thread), never two at once."""

    def __init__(self, station_id: str, outbox: Outbox, rules: RuleSet) -> None:
        self.station_id = station_id
        self.outbox = outbox
        self.engine = RuleEngine(rules, clock=ClockPolicy(allowed_lateness=0.0))
        self.stats = EdgeStats()
        self._in_alarm: set[str] = set()
        self._sticky: set[str] = set()

    def in_alarm(self, readings: Sequence[Reading], now: datetime) -> set[str]:
        """A sample through the edge's rules: the sensors with an incident open at the edge, or
        a condition pending (its hold running). The pending readings are urgent too: the center
        measures the hold from the first of them, so they must not wait behind a backlog."""
        for alert in self.engine.process(self.station_id, readings, now):
            if alert.state == "cleared":
                self._in_alarm.difference_update(alert.members)
            else:
                self._in_alarm.update(alert.members)
        urgent = self._in_alarm | self._sticky
        sensors = self.engine.sensors
        for sensor_id in {r.sensor_id for r in readings} - urgent:
            tracks = state.tracks if (state := sensors.get(sensor_id)) is not None else None
            if tracks is not None and any(track.phase != IDLE for track in tracks.values()):
                urgent.add(sensor_id)
        # Once urgent, a sensor stays urgent until the outbox has drained: the center must see
        # its readings from there on in order (earlier routine ones come late and are only
        # kept for the record), never with routine ones missing in between.
        self._sticky |= urgent
        return urgent

    def drained(self) -> None:
        """The outbox is empty: priority no longer reorders anything."""
        self._sticky.clear()

    def put(self, readings: Sequence[Reading], alarm: set[str]) -> int:
        """Into the outbox, the readings of sensors in ``alarm`` with alarm priority; returns
        how many older readings were evicted (counted in ``stats``)."""
        urgent = [r for r in readings if r.sensor_id in alarm] if alarm else []
        routine = [r for r in readings if r.sensor_id not in alarm] if urgent else readings
        evicted = self.outbox.put(routine, Priority.ROUTINE) if routine else 0
        if urgent:
            evicted += self.outbox.put(urgent, Priority.ALARM)
        self.stats.readings_sampled += len(readings)
        self.stats.alarm_readings += len(urgent)
        if evicted:
            self.stats.dropped_readings += evicted
            log.warning("%s: outbox full, dropped %d oldest readings", self.station_id, evicted)
        return evicted

    def payload(self, sealed: SealedBatch, now: datetime) -> bytes:
        """A sealed batch on the wire: its own boot and seq, the readings as sealed."""
        return sealed.payload(self.station_id, now)

    def gap_report(self, marker: GapMarker, now: datetime) -> bytes:
        return encode(
            GapReport(
                station_id=self.station_id,
                boot_epoch=marker.boot_epoch,
                marker_id=marker.marker_id,
                reason=marker.reason,
                readings=marker.readings,
                first_ts=marker.first_ts,
                last_ts=marker.last_ts,
                batches=marker.batches,
                first_seq=marker.first_seq,
                last_seq=marker.last_seq,
                sent_at=now,
            )
        )

    def answer(
        self, request: ResendRequest, found: Resend, boot_epoch: int, now: datetime
    ) -> tuple[list[bytes], list[bytes], bytes]:
        """What a re-send request gets: the retained batches again, a gap report per range no
        longer kept, and the answer on ``ack``."""
        self.stats.resend_requests += 1
        telemetry = [self.payload(sealed, now) for sealed in found.batches]
        self.stats.batches_resent += len(telemetry)
        gaps = [
            self.gap_report(
                GapMarker(
                    marker_id=EXPIRED_MARKERS + request.request_id * 1024 + k,
                    boot_epoch=boot_epoch,
                    reason="expired",
                    readings=0,
                    first_ts=None,
                    last_ts=None,
                    batches=last - first + 1,
                    first_seq=first,
                    last_seq=last,
                ),
                now,
            )
            for k, (first, last) in enumerate(found.evicted)
        ]
        unknown = found.unknown
        ack = CommandAck(
            station_id=self.station_id,
            request_id=request.request_id,
            command="resend",
            resent=len(found.batches),
            pending=len(found.pending),
            expired=sum(last - first + 1 for first, last in found.evicted),
            unknown=0 if unknown is None else unknown[1] - unknown[0] + 1,
            sent_at=now,
        )
        return telemetry, gaps, encode(ack)
