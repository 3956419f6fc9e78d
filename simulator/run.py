"""Run a scenario in simulated time: a recording of the MQTT traffic plus its ground truth.

No clock is read and no network is touched. Each station runs the real agent's decisions
(``edge.core.EdgeCore`` over the real in-memory outbox, on the simulated clock): readings due by
the devices' reporting policies go into its outbox (those of a sensor in alarm at the edge with
alarm priority), batches are sealed every ``edge.batch_interval`` with the outbox's own sequence
numbers, held while the link is down and sent alarm first when it comes back, acknowledged as
the broker takes them. Faults are applied on the way, and every message is written to the
recording at its simulated publish time. The same scenario and seed give byte-identical files.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from edge.core import EdgeCore
from edge.outbox import MemoryOutbox, OutboxLimits
from ingest.gaps import GapPolicy, GapTracker
from protocol import (
    Channel,
    CommandAck,
    Reading,
    SensorInfo,
    SensorKind,
    StationState,
    StationTopic,
    encode,
)
from recording.format import Record, RecordingWriter
from rules import load_rules
from simulator.city import City, build_city
from simulator.faults import Fault, FaultPlan, garbage_payload
from simulator.fleet import SimulatedFleet
from simulator.incidents import build_incident, suits
from simulator.physics import Street
from simulator.reporting import ReportPolicy, micros, policy_for
from simulator.sampling import Ticks, utc_from_us
from simulator.scenario import CitySpec, FaultSpec, IncidentSpec, Scenario
from simulator.traffic import DayClock
from simulator.truth import GroundTruth, LabelledIncident, write_truth

_Queue = deque[tuple[int, Reading]]
EDGE_RULES = load_rules()
"""The rules the stations' agents run (the center's defaults), for alarm priority."""
CHUNK = timedelta(hours=1)
"""The devices' reports are worked out this much simulated time at a time."""


@dataclass(frozen=True, slots=True)
class RunOutput:
    recording: Path
    truth_path: Path
    truth: GroundTruth


class _Edge:
    """One station's agent: its decisions and outbox on the simulated clock."""

    def __init__(self, station_id: str, boot_epoch: int, max_batch: int, now: datetime) -> None:
        self.now = now
        self.boot_epoch = boot_epoch
        outbox = MemoryOutbox(
            OutboxLimits(), boot_epoch=boot_epoch, max_batch=max_batch, window=64, clock=self.clock
        )
        self.core = EdgeCore(station_id, outbox, EDGE_RULES)
        self.waiting: list[Reading] = []
        self.held: tuple[int, bytes] | None = None

    def clock(self) -> datetime:
        return self.now

    def store(self, ts: datetime) -> None:
        """The readings taken since the last round into the outbox."""
        self.now = ts
        if self.waiting:
            readings, self.waiting = self.waiting, []
            self.core.put(readings, self.core.in_alarm(readings, ts))

    def drain(self, sent_at: datetime) -> tuple[list[bytes], list[tuple[int, bytes]]]:
        """Gap reports and batches to publish now, alarm batches first; the broker takes and
        acknowledges each at once."""
        self.now = sent_at
        outbox = self.core.outbox
        gaps = []
        for marker in outbox.pending_gaps():
            gaps.append(self.core.gap_report(marker, sent_at))
            outbox.gap_announced(marker.marker_id)
        payloads = []
        while batches := outbox.take():
            for sealed in batches:
                payloads.append((sealed.seq, self.core.payload(sealed, sent_at)))
                outbox.ack(sealed.seq)
        self.core.drained()
        return gaps, payloads


def _ns(ts: datetime) -> int:
    return int(ts.timestamp() * 1_000_000) * 1000


class _Run:
    def __init__(self, scenario: Scenario, writer: RecordingWriter) -> None:
        self.scenario = scenario
        self.writer = writer
        spec = scenario.city
        self.city: City = build_city(
            seed=scenario.seed,
            districts=spec.districts,
            stations_per_district=spec.stations_per_district,
            covers_per_station=spec.covers_per_station,
            pressure_per_station=spec.pressure_per_station,
            poles_per_station=spec.poles_per_station,
        )
        self.start = scenario.start.astimezone(UTC)
        street = Street(
            loose_covers=spec.loose_covers,
            wind=spec.wind,
            clock=DayClock(spec.day_length.total_seconds(), self.start.timestamp()),
        )
        self.fleet = SimulatedFleet(self.city, policies=_policies(spec, street), street=street)
        self.rng = random.Random(f"{scenario.seed}/scenario/{scenario.name}")
        self.end = scenario.start + scenario.duration
        boot = int(self.start.timestamp())
        self.edges = {
            sid: _Edge(sid, boot, scenario.edge.max_batch, self.start)
            for sid in self.fleet.stations
        }
        self.counts = {"telemetry": 0, "state": 0, "garbage": 0, "duplicates": 0, "gaps": 0}
        self.ingest: GapTracker | None = None
        self.faults = FaultPlan([self._fault(f) for f in scenario.faults], self.rng)
        if any(f.kind == "broker_drop" for f in self.faults.faults):
            # ingest's side of the re-send loop, on simulated time (only where it matters, so
            # the other scenarios' recordings stay as they were)
            self.ingest = GapTracker(GapPolicy())
            self.counts |= {"broker_dropped": 0, "resend_requests": 0, "resent": 0}
        self.incidents = [self._incident(i, n) for n, i in enumerate(scenario.incidents)]

    # -- resolving targets -------------------------------------------------------------
    def _pick_sensor(self, wanted: str, incident_kind: str | None) -> SensorInfo:
        if wanted != "random":
            return self.city.sensor(wanted)
        candidates = [
            s for s in self.city.sensors if incident_kind is None or suits(incident_kind, s)
        ]
        if not candidates:
            raise ValueError(f"the city has no sensor where {incident_kind} can happen")
        return self.rng.choice(candidates)

    def _pick_station(self, wanted: str) -> str:
        if wanted != "random":
            return self.city.station(wanted).station_id
        return self.rng.choice(sorted(self.fleet.stations))

    def _incident(self, spec: IncidentSpec, number: int) -> LabelledIncident:
        sensor = self._pick_sensor(spec.sensor, spec.kind)
        start = self.start + spec.start
        incident = build_incident(
            spec.kind, self.city, sensor.sensor_id, start, spec.duration, spec.params
        )
        self.fleet.inject(incident)
        expected = incident.expected_case(sensor)
        station = self.city.station_of(sensor.sensor_id).station_id
        return LabelledIncident(
            id=f"{self.scenario.name}-{number:03d}",
            kind=spec.kind,
            sensor_id=sensor.sensor_id,
            station_id=station,
            sensors=tuple(incident.sensor_ids),
            start=start,
            end=start + spec.duration,
            expected_category=expected[0] if expected else None,
            expected_class=expected[1] if expected else None,
            expected_severity=incident.severity,
            during_outage=any(
                f.kind == "station_offline"
                and f.station_id == station
                and f.start < start + spec.duration
                and (f.end is None or f.end > start)
                for f in self.faults.faults
            ),
        )

    def _fault(self, spec: FaultSpec) -> Fault:
        sensor_id = station_id = None
        if spec.sensor is not None:
            sensor_id = self._pick_sensor(spec.sensor, None).sensor_id
            station_id = self.city.station_of(sensor_id).station_id
        elif spec.station is not None:
            station_id = self._pick_station(spec.station)
        start = self.start + spec.start
        return Fault(
            kind=spec.kind,
            start=start,
            end=start + spec.duration if spec.duration else None,
            station_id=station_id,
            sensor_id=sensor_id,
            count=spec.count,
            probability=spec.probability,
            offset_s=spec.offset.total_seconds(),
            battery_v=spec.battery_v,
        )

    # -- publishing --------------------------------------------------------------------
    def _publish(self, ts: datetime, topic: StationTopic, payload: bytes, retain: bool) -> None:
        self.writer.write(Record(_ns(ts), str(topic), payload, qos=1, retain=retain))

    def _state(self, ts: datetime, station_id: str, online: bool) -> None:
        station = self.fleet.stations[station_id]
        state = StationState(
            station_id=station_id,
            status="online" if online else "offline",
            boot_epoch=self.edges[station_id].boot_epoch,
            ts=ts,
            sensors=list(station.sensors()) if online else [],
        )
        self._publish(ts, StationTopic(station_id, Channel.STATE), encode(state), retain=True)
        self.counts["state"] += 1

    def _send(self, ts: datetime, station_id: str, *, final: bool = False) -> None:
        edge = self.edges[station_id]
        reorder = self.faults.reordered(station_id, ts) and not final
        gaps, payloads = edge.drain(ts)
        for payload in gaps:
            self._publish(ts, StationTopic(station_id, Channel.GAPS), payload, retain=False)
            self.counts["gaps"] += 1
        for batch in payloads:
            if reorder and edge.held is None:
                edge.held = batch  # goes out after the next batch
                continue
            self._telemetry(ts, station_id, batch)
            if edge.held is not None:
                self._telemetry(ts, station_id, edge.held)
                edge.held = None
        if edge.held is not None and not reorder:
            self._telemetry(ts, station_id, edge.held)
            edge.held = None

    def _telemetry(self, ts: datetime, station_id: str, batch: tuple[int, bytes]) -> None:
        seq, payload = batch
        if self.faults.broker_dropped(station_id, ts):  # acknowledged to the edge, never passed on
            self.counts["broker_dropped"] += 1
            return
        topic = StationTopic(station_id, Channel.TELEMETRY)
        self._publish(ts, topic, payload, retain=False)
        self.counts["telemetry"] += 1
        if self.ingest is not None:
            self.ingest.saw(station_id, self.edges[station_id].boot_epoch, seq, ts)
        if self.faults.duplicated(station_id, ts):
            self._publish(ts, topic, payload, retain=False)
            self.counts["duplicates"] += 1

    def _resend_round(self, ts: datetime) -> None:
        """What ingest asks for (its gap tracker on simulated time) and what the stations'
        agents answer from their retention windows, both into the recording."""
        assert self.ingest is not None
        for request in self.ingest.due(ts):
            station_id = request.station_id  # the request itself is ingest's, not recorded
            self.counts["resend_requests"] += 1
            edge = self.edges[station_id]
            found = edge.core.outbox.resend(request.first_seq, request.last_seq)
            resent, gaps, ack = edge.core.answer(request, found, edge.boot_epoch, ts)
            for sealed, payload in zip(found.batches, resent, strict=True):
                self.counts["resent"] += 1
                self._telemetry(ts, station_id, (sealed.seq, payload))
            for payload in gaps:
                self._publish(ts, StationTopic(station_id, Channel.GAPS), payload, retain=False)
                self.counts["gaps"] += 1
            self._publish(ts, StationTopic(station_id, Channel.ACK), ack, retain=False)
            self.ingest.answer(CommandAck.model_validate_json(ack), ts)

    def _garbage(self, ts: datetime, fault: Fault) -> None:
        assert fault.station_id is not None
        topic = StationTopic(fault.station_id, Channel.TELEMETRY)
        for index in range(fault.count):
            self._publish(ts, topic, garbage_payload(self.rng, index), retain=False)
            self.counts["garbage"] += 1

    def run(self) -> GroundTruth:
        """Tick by tick: the devices' reports go to their station's outbox (worked out a
        ``CHUNK`` at a time), garbage goes out at its tick, batches every ``batch_interval``."""
        edge = self.scenario.edge
        ticks = Ticks(micros(self.start), micros(self.start + edge.tick) - micros(self.start))
        every_us = micros(self.start + edge.batch_interval) - micros(self.start)
        total = ticks.first_at_or_after(micros(self.end))
        chunk = max(1, CHUNK // edge.tick)
        garbage: dict[int, list[Fault]] = {}
        for fault in self.faults.faults:
            if fault.kind == "garbage":
                garbage.setdefault(ticks.first_at_or_after(micros(fault.start)), []).append(fault)
        queues: dict[str, _Queue] = {s: deque() for s in self.fleet.stations}
        online = dict.fromkeys(self.fleet.stations, True)
        for station_id in sorted(self.fleet.stations):
            self._state(self.start, station_id, online=True)
        next_batch, worked_out = ticks.start_us + every_us, 0
        for k in range(total):
            if k >= worked_out:
                stop = min(total, worked_out + chunk)
                for station_id, station in self.fleet.stations.items():
                    queues[station_id].extend(station.reports(ticks, worked_out, stop))
                worked_out = stop
            t_us = ticks.at(k)
            for fault in garbage.get(k, ()):
                self._garbage(utc_from_us(t_us), fault)
            if t_us >= next_batch:
                self._to_outboxes(queues, t_us)
                self._batch_round(utc_from_us(t_us), online)
                if self.ingest is not None:
                    self._resend_round(utc_from_us(t_us))
                next_batch += every_us
        self._to_outboxes(queues, None)
        self._batch_round(self.end, online, final=True)
        return self._truth()

    def _to_outboxes(
        self, queues: dict[str, deque[tuple[int, Reading]]], until: int | None
    ) -> None:
        """Move the reports taken up to ``until`` (all: None) into the stations' outboxes,
        through the sensor and clock faults."""
        for station_id, queue in queues.items():
            waiting = self.edges[station_id].waiting
            while queue and (until is None or queue[0][0] <= until):
                t_us, reading = queue.popleft()
                if self.faults.faults:
                    (reading,) = self.faults.distort(station_id, [reading], utc_from_us(t_us))
                waiting.append(reading)

    def _batch_round(self, ts: datetime, online: dict[str, bool], final: bool = False) -> None:
        for station_id in sorted(self.fleet.stations):
            self.edges[station_id].store(ts)
            up = self.faults.online(station_id, ts)
            if up != online[station_id]:
                online[station_id] = up
                self._state(ts, station_id, online=up)  # death = the broker's last will
            if up:
                self._send(ts, station_id, final=final)

    def _truth(self) -> GroundTruth:
        return GroundTruth(
            scenario=self.scenario.name,
            seed=self.scenario.seed,
            start=self.start,
            end=self.end,
            sensors=sum(len(s.sensors) for s in self.city.stations),
            stations=len(self.city.stations),
            incidents=tuple(self.incidents),
            faults=tuple(self.faults.faults),
            messages=dict(self.counts),
        )


def _policies(spec: CitySpec, street: Street) -> dict[SensorKind, ReportPolicy]:
    """The reporting policy of each sensor kind the scenario sets (others: the default)."""
    kinds = {SensorKind(name): mode for name, mode in spec.reporting.items()}
    if street.clock.speed != 1.0:
        kinds = {kind: kinds.get(kind, "periodic") for kind in SensorKind}
    return {
        kind: policy_for(kind, _powered(kind), mode, day_speed=street.clock.speed)
        for kind, mode in kinds.items()
    }


def _powered(kind: SensorKind) -> bool:
    return kind is SensorKind.POLE


def run_scenario(scenario: Scenario, out_dir: Path) -> RunOutput:
    """Write ``<out_dir>/<name>.csrec`` and ``<out_dir>/<name>.truth.json``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    recording = out_dir / f"{scenario.name}.csrec"
    truth_path = out_dir / f"{scenario.name}.truth.json"
    recording.unlink(missing_ok=True)
    metadata = {"source": "citysense simulate", "scenario": scenario.name, "seed": scenario.seed}
    with RecordingWriter(recording, metadata) as writer:
        truth = _Run(scenario, writer).run()
    write_truth(truth, truth_path)
    return RunOutput(recording, truth_path, truth)
