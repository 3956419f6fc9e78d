"""The rule engine: pure and deterministic, evaluated in event time.

``RuleEngine.process(station_id, readings, sent_at)`` takes one batch: device clocks are checked
against the edge's ``sent_at`` (``rules.clock``), readings wait in a small per-station reorder
buffer until the station's watermark has passed them by the allowed lateness, and are then
evaluated in event-time order; timers (holds, clears, silence) fire as that event-time clock
passes them. Nothing here reads a clock or does I/O, so the same batches give the same alerts
live, replayed at ×100, or in a backtest. All state is in ``RuleEngine.state`` records that
``rules.snapshot`` writes and reads back.
"""

from __future__ import annotations

import heapq
from bisect import bisect_right
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime

from protocol import ReadingView, kind_values
from rules.alerts import Alert, Evidence
from rules.clock import ClockPolicy, Row, check_clock
from rules.compiled import CompiledRule, compile_rule, compile_rules
from rules.conditions import Memory
from rules.groups import Groups, Locate
from rules.inherit import Scope, applicable, resolve
from rules.schema import RuleSet
from rules.state import (
    ARMED,
    CLEARING,
    EVIDENCE_LIMIT,
    IDLE,
    OPEN,
    PENDING,
    BufferedReading,
    SensorState,
    StationState,
    Track,
)
from rules.stats import EngineStats

__all__ = ["EngineStats", "RuleEngine"]

NO_DATA_SCAN_FRACTION = 0.1
"""A silent sensor is noticed within this fraction of its rule's ``no_data`` period."""

DistrictOf = Callable[[str], str | None]
"""A sensor's district code (the first six digits of its component id), when known."""
SensorRules = tuple[Sequence[CompiledRule], dict[str, CompiledRule]]
"""The rules one sensor is evaluated by, as a list and by id."""


def _time(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


class RuleEngine:
    def __init__(
        self,
        rules: RuleSet,
        *,
        locate: Locate | None = None,
        clock: ClockPolicy | None = None,
        district_of: DistrictOf | None = None,
    ) -> None:
        self.rules = rules
        self.clock_policy = clock or ClockPolicy()
        self._by_kind, self._by_id = compile_rules(rules)
        self._known_values = {kind: kind_values(kind) for kind in {r.kind for r in rules.rules}}
        # Inherited thresholds (rules.inherit): with overrides, each sensor gets its own list,
        # shared by every sensor the same overrides apply to; without, the kind's list.
        self._plain = not rules.overrides
        self.district_of: DistrictOf = district_of or (lambda _sensor_id: None)
        self._sensor_rules: dict[str, SensorRules] = {}
        self.districts: dict[str, str] = {}
        """Each sensor's district as last known (in snapshots: a restart knows it before the
        station's birth arrives again)."""
        self._variants: dict[tuple[tuple[str, tuple[int, ...]], ...], SensorRules] = {}
        variants = [
            compile_rule(resolve(rules, rules.rule(o.rule), [i]).rule)
            for i, o in enumerate(rules.overrides)
        ]
        every = [*self._by_id.values(), *(v for v in variants if v.rule.enabled)]
        self.rule_ids = frozenset(r.id for r in every)
        """Rules enabled for at least one sensor."""
        self._stateful = frozenset(r.id for r in every if r.stateful)
        self.sensors: dict[str, SensorState] = {}
        self.stations: dict[str, StationState] = {}
        self.groups = Groups(locate)
        self.stats = EngineStats()
        self._order = 0
        self._out: list[Alert] = []
        self._no_data_min = min((r.rule.no_data for r in every if r.rule.no_data), default=None)

    def set_locator(self, locate: Locate, district_of: DistrictOf | None = None) -> None:
        """Where sensors are (ingest's station registry), for grouping alerts by distance, and
        (``district_of``) which district's overrides apply to them."""
        self.groups.locate = locate
        if district_of is not None:
            self.district_of = district_of
            self._rescope(list(self._sensor_rules))

    # -- which rules a sensor has --------------------------------------------------------------
    def rules_of(self, sensor_id: str, station_id: str, kind: str) -> SensorRules:
        """The compiled rules ``sensor_id`` is evaluated by, overrides applied."""
        if self._plain:
            return self._by_kind.get(kind, ()), self._by_id
        cached = self._sensor_rules.get(sensor_id)
        if cached is None:
            district = self.district_of(sensor_id) or self.districts.get(sensor_id)
            if district is not None:
                self.districts[sensor_id] = district
            scope = Scope(sensor_id, station_id, district)
            key = tuple(
                (rule.id, tuple(applicable(self.rules, rule.id, scope)))
                for rule in self.rules.rules
                if rule.kind.value == kind
            )
            cached = self._variants.get(key)
            if cached is None and not any(indexes for _, indexes in key):
                cached = self._by_kind.get(kind, ()), self._by_id
            if cached is None:
                cached = self._variants[key] = self._compile_variant(key)
            self._sensor_rules[sensor_id] = cached
        return cached

    def _compile_variant(self, key: tuple[tuple[str, tuple[int, ...]], ...]) -> SensorRules:
        listed: list[CompiledRule] = []
        for rule_id, indexes in key:
            if indexes:
                rule = resolve(self.rules, self.rules.rule(rule_id), indexes).rule
                compiled = compile_rule(rule) if rule.enabled else None
            else:
                compiled = self._by_id.get(rule_id)
            if compiled is not None:
                listed.append(compiled)
        return listed, {rule.id: rule for rule in listed}

    def has_overrides(self, sensor_id: str) -> bool:
        """Whether any override applies to a sensor the engine has seen (False if unseen)."""
        sensor = self.sensors.get(sensor_id)
        if self._plain or sensor is None:
            return False
        listed, _ = self.rules_of(sensor_id, sensor.station, sensor.kind)
        return listed is not self._by_kind.get(sensor.kind, ())

    def _rescope(self, sensor_ids: Iterable[str]) -> None:
        """Forget which rules these sensors have (their district may have changed) and put
        back the timers their pending holds and clears wait on, under the rules they have now
        (a timer set under the old ones is ignored when it fires: its time does not match)."""
        if self._plain:
            return
        for sensor_id in sensor_ids:
            if self._sensor_rules.pop(sensor_id, None) is None:
                continue
            sensor = self.sensors.get(sensor_id)
            if sensor is not None and sensor.tracks:
                for rule_id, track in sensor.tracks.items():
                    self.rearm(sensor_id, sensor, rule_id, track)

    def rearm(self, sensor_id: str, sensor: SensorState, rule_id: str, track: Track) -> None:
        """Put back the timer a pending hold or a clearing alert waits on."""
        rule = self._rule(sensor_id, sensor, rule_id)
        if rule is None:  # enabled for other sensors only
            return
        station = self._station(sensor.station)
        if track.phase == PENDING and rule.hold > 0 and rule.count is None:
            station.push_timer(track.since + rule.hold, sensor_id, rule_id)
        elif track.phase == CLEARING:
            station.push_timer(track.clear_since + rule.clear_hold(track), sensor_id, rule_id)

    def _rule(self, sensor_id: str, sensor: SensorState, rule_id: str) -> CompiledRule | None:
        if self._plain:
            return self._by_id.get(rule_id)
        return self.rules_of(sensor_id, sensor.station, sensor.kind)[1].get(rule_id)

    # -- input ---------------------------------------------------------------------------
    def process(
        self,
        station_id: str,
        readings: Iterable[ReadingView],
        sent_at: datetime | None = None,
    ) -> list[Alert]:
        """One batch of a station; returns the transitions it caused (maybe none yet: readings
        wait for the allowed lateness). ``sent_at`` is the edge clock when it was sent."""
        rows: list[Row] = [(r.ts.timestamp(), r.sensor_id, r.kind, r.values) for r in readings]
        sent = sent_at.timestamp() if sent_at is not None else None
        return self.process_rows(station_id, rows, sent)

    def process_rows(self, station_id: str, rows: list[Row], sent: float | None) -> list[Alert]:
        """``process`` on rows (event time in epoch seconds, sensor id, kind, values)."""
        station = self._station(station_id)
        if not rows:
            return []
        if sent is None:
            sent = max(row[0] for row in rows)
        checked = check_clock(station, rows, sent, self.clock_policy, self.stats)
        order = self._order
        arrived = sorted(
            (t, order + n, sensor_id, kind, values, flags)
            for n, (t, sensor_id, kind, values, flags) in enumerate(checked.readings, 1)
        )
        self._order = order + len(arrived)
        # The buffer stays sorted: a batch later in event time than everything waiting (the
        # common case) is appended; one that was overtaken is merged in (Timsort: two runs).
        # Sorting the whole buffer for every batch cost O(buffered) per batch under a backlog.
        buffer = station.buffer
        late = bool(buffer) and arrived[0] < buffer[-1]
        buffer.extend(arrived)
        if late:
            buffer.sort()
        if checked.watermark > station.watermark:
            station.watermark = checked.watermark
        self._release(station_id, station, station.watermark - self.clock_policy.allowed_lateness)
        return self._take()

    def advance(self, station_id: str, watermark: datetime) -> list[Alert]:
        """Move a station's watermark without readings (an edge heartbeat)."""
        station = self._station(station_id)
        station.watermark = max(station.watermark, watermark.timestamp())
        self._release(station_id, station, station.watermark - self.clock_policy.allowed_lateness)
        return self._take()

    def drain(self) -> list[Alert]:
        """Evaluate everything still buffered, up to each station's watermark (end of a
        backtest or a clean shutdown)."""
        for station_id, station in sorted(self.stations.items()):
            self._release(station_id, station, station.watermark)
        return self._take()

    def note_birth(self, station_id: str, ts: datetime) -> None:
        """A station announced itself: a device time before its first birth is a reset clock."""
        station = self._station(station_id)
        self._rescope(station.sensors)  # a birth may move its sensors to another district
        born = ts.timestamp() - self.clock_policy.birth_slack
        # The first birth counts: a reconnect's birth must not make its own backlog "too old".
        if station.born == float("-inf") or born < station.born:
            station.born = born

    # -- evaluation in event time ----------------------------------------------------------
    def _station(self, station_id: str) -> StationState:
        station = self.stations.get(station_id)
        if station is None:
            station = self.stations[station_id] = StationState()
        return station

    def _release(self, station_id: str, station: StationState, frontier: float) -> None:
        buffer = station.buffer  # sorted (process_rows, the batched path, a restored snapshot)
        cut = bisect_right(buffer, frontier, key=_event_time) if buffer else 0
        if cut:
            ready = buffer[:cut]
            del buffer[:cut]
            timers = station.timers
            scans = self._no_data_min is not None
            for t, _order, sensor_id, kind, values, flags in ready:
                if t < station.clock:
                    late = (*flags, "late")  # past the allowed lateness: in order only per sensor
                    self._reading(station_id, station, t, sensor_id, kind, values, late)
                    continue
                if (timers and timers[0][0] < t) or (scans and t >= station.next_scan):
                    self._advance(station_id, station, t, before=True)
                elif t > station.clock:
                    station.clock = t
                self._reading(station_id, station, t, sensor_id, kind, values, flags)
        if frontier > station.clock:
            self._advance(station_id, station, frontier)

    def _advance(
        self, station_id: str, station: StationState, now: float, *, before: bool = False
    ) -> None:
        """Fire every timer due by ``now`` (``before``: due before ``now``, as a reading taken
        at ``now`` says itself what state the sensor was in then) and notice silent sensors."""
        timers = station.timers
        while timers and (timers[0][0] < now or (not before and timers[0][0] == now)):
            due, sensor_id, rule_id = heapq.heappop(timers)
            self._timer(station_id, due, sensor_id, rule_id)
        if now > station.clock:
            station.clock = now
        if self._no_data_min is not None and now >= station.next_scan:
            self._scan_silence(station_id, station, now)
            station.next_scan = now + max(1.0, self._no_data_min * NO_DATA_SCAN_FRACTION)

    def _timer(self, station_id: str, due: float, sensor_id: str, rule_id: str) -> None:
        sensor = self.sensors.get(sensor_id)
        rule = self._rule(sensor_id, sensor, rule_id) if sensor is not None else None
        track = sensor.tracks.get(rule_id) if sensor and sensor.tracks else None
        if sensor is None or rule is None or track is None:
            return
        fresh = sensor.last_t + rule.rule.stale_after >= due
        if track.phase == PENDING and due == track.since + rule.hold:
            if fresh and track.last_cond:
                self._hold_met(station_id, sensor_id, sensor, rule, track, due)
            elif not fresh:
                self._reset(sensor, rule, track)
        elif (
            track.phase == CLEARING and due == track.clear_since + rule.clear_hold(track) and fresh
        ):
            self._close(station_id, sensor_id, sensor, rule, track, due)

    def _scan_silence(self, station_id: str, station: StationState, now: float) -> None:
        for sensor_id in sorted(station.sensors):
            sensor = self.sensors[sensor_id]
            for rule in self.rules_of(sensor_id, sensor.station, sensor.kind)[0]:
                period = rule.rule.no_data
                if period is None or now - sensor.last_t < period:
                    continue
                track = self._track(sensor, rule)
                if track.phase == IDLE:
                    track.since = sensor.last_t
                    track.evidence = []
                    self._open(station_id, sensor_id, sensor, rule, track, sensor.last_t + period)

    def _reading(
        self,
        station_id: str,
        station: StationState,
        t: float,
        sensor_id: str,
        kind: str,
        values: dict[str, float],
        flags: tuple[str, ...],
    ) -> None:
        sensor = self.sensors.get(sensor_id)
        if sensor is None:
            sensor = self.sensors[sensor_id] = SensorState(station_id, kind)
            station.sensors.add(sensor_id)
            self._adopt_member(sensor_id, sensor)
        elif t <= sensor.last_t:
            self.stats.late_skipped += 1
            return
        if flags and flags[-1] == "late":
            self.stats.late_evaluated += 1
        sensor.last_t = t
        self.stats.readings_evaluated += 1
        known = self._known_values.get(kind)  # type: ignore[call-overload]
        if known is not None and not known.issuperset(values):
            self.stats.unknown_value += 1
        rules = (
            self._by_kind.get(kind, ())
            if self._plain
            else self.rules_of(sensor_id, station_id, kind)[0]
        )
        for rule in rules:
            tracks = sensor.tracks
            track = tracks.get(rule.id) if tracks is not None else None
            if rule.no_data_rule:
                if track is not None and track.phase in (OPEN, CLEARING):
                    self._close(station_id, sensor_id, sensor, rule, track, t)
                continue
            cond: bool | None = None
            if rule.stateful:
                if track is None:
                    track = self._track(sensor, rule)
                if track.phase == IDLE:  # the common case, a sensor at rest: test it here
                    cond = rule.when(values, t, track.memory)
                    if cond is None:
                        self.stats.missing_field += 1
                        continue
                    if not cond:
                        continue
            elif track is None and rule.fast is not None:
                cond = rule.fast(values)
                if cond is None:
                    self.stats.missing_field += 1
                    continue
                if not cond:
                    continue
            if track is None:
                track = self._track(sensor, rule)
            self._step(station_id, station, sensor_id, sensor, rule, track, t, values, flags, cond)

    def _track(self, sensor: SensorState, rule: CompiledRule) -> Track:
        if sensor.tracks is None:
            sensor.tracks = {}
        track = sensor.tracks.get(rule.id)
        if track is None:
            track = sensor.tracks[rule.id] = Track()
            if rule.id in self._stateful:  # for one sensor or another: overrides may differ
                track.memory = Memory()
        return track

    def _step(
        self,
        station_id: str,
        station: StationState,
        sensor_id: str,
        sensor: SensorState,
        rule: CompiledRule,
        track: Track,
        t: float,
        values: dict[str, float],
        flags: tuple[str, ...],
        tested: bool | None = None,
    ) -> None:
        """One reading through one rule's state machine (``tested``: the open condition, when
        the caller has evaluated it already; stateful tests must not see a reading twice)."""
        cond = rule.when(values, t, track.memory) if tested is None else tested
        if cond is None:
            self.stats.missing_field += 1
            return
        value = values.get(rule.field, float("nan"))
        if flags:
            track.flags = (track.flags or set()) | set(flags)
        phase = track.phase
        if phase in (IDLE, PENDING, ARMED):
            self._pending(station_id, station, sensor_id, sensor, rule, track, t, cond, value)
        else:
            clear = rule.clear(values, t, track.memory, cond)
            if clear is None:
                self.stats.missing_field += 1
            elif clear and phase == OPEN:
                track.phase = CLEARING
                track.clear_since = t
                hold = rule.clear_hold(track)
                if hold <= 0:
                    self._close(station_id, sensor_id, sensor, rule, track, t)
                else:
                    station.push_timer(t + hold, sensor_id, rule.id)
            elif clear and phase == CLEARING:
                hold = rule.clear_hold(track)
                if t - track.clear_since >= hold:
                    self._close(
                        station_id, sensor_id, sensor, rule, track, track.clear_since + hold
                    )
            elif not clear and phase == CLEARING:
                track.phase = OPEN
        track.last_cond = bool(cond)
        if track.removable() and sensor.tracks is not None:
            sensor.tracks.pop(rule.id, None)

    def _pending(
        self,
        station_id: str,
        station: StationState,
        sensor_id: str,
        sensor: SensorState,
        rule: CompiledRule,
        track: Track,
        t: float,
        cond: bool,
        value: float,
    ) -> None:
        if rule.count is not None:
            self._count(station_id, sensor_id, sensor, rule, track, t, cond, value)
            return
        if not cond:
            if track.phase == ARMED:
                self.groups.disarm(rule.id, sensor_id)
            self._reset(sensor, rule, track)
            return
        if track.phase == IDLE or (
            rule.steady is not None and max(track.hi, value) - min(track.lo, value) > rule.steady
        ):  # a new start, or values jumping about: the hold starts again here
            track.phase = PENDING
            track.since = t
            track.evidence = []
            track.lo = track.hi = value
            if rule.hold > 0:
                station.push_timer(t + rule.hold, sensor_id, rule.id)
        track.lo, track.hi = min(track.lo, value), max(track.hi, value)
        _remember(track, t, value)
        if track.phase == PENDING and t - track.since >= rule.hold:
            self._hold_met(station_id, sensor_id, sensor, rule, track, track.since + rule.hold)

    def _count(
        self,
        station_id: str,
        sensor_id: str,
        sensor: SensorState,
        rule: CompiledRule,
        track: Track,
        t: float,
        cond: bool,
        value: float,
    ) -> None:
        count = rule.count
        assert count is not None
        hits = track.hits if track.hits is not None else []
        if count.within is not None:
            hits = [h for h in hits if t - h < count.within]
            if cond:
                hits.append(t)
            met = len(hits) >= count.n
        else:
            assert count.of is not None
            hits = [*hits, 1.0 if cond else 0.0][-count.of :]
            met = sum(hits) >= count.n
        track.hits = hits if any(hits) else None
        if track.hits is None:
            if track.phase == ARMED:
                self.groups.disarm(rule.id, sensor_id)
            self._reset(sensor, rule, track)
            return
        if track.phase == IDLE:
            track.phase = PENDING
            track.since = t
            track.evidence = []
        if cond:
            _remember(track, t, value)
        if met and track.phase == PENDING:
            self._hold_met(station_id, sensor_id, sensor, rule, track, t)

    def _reset(self, sensor: SensorState, rule: CompiledRule, track: Track) -> None:
        track.phase = IDLE
        track.evidence = None
        track.hits = None
        track.flags = None

    # -- transitions ---------------------------------------------------------------------
    def _hold_met(
        self,
        station_id: str,
        sensor_id: str,
        sensor: SensorState,
        rule: CompiledRule,
        track: Track,
        at: float,
    ) -> None:
        flap = rule.rule.flap
        if flap is not None and track.incident is not None:
            recent = [o for o in (track.opens or []) if at - o <= flap.window]
            if len(recent) + 1 >= flap.max_opens:
                track.opens = [*recent, at]
                track.phase, track.flapping = OPEN, True
                self.stats.flapping += 1
                first, start = track.incident
                self.groups.reopen(rule.id, first, start, sensor_id, at)
                self._emit(rule, station_id, sensor_id, sensor, track, "flapping", at, first, start)
                return
        joined = self.groups.join(rule, sensor_id, at)
        if joined is not None:
            track.phase, track.incident = OPEN, joined.key
            self.stats.grouped += 1
            first, start = joined.key
            self._emit(rule, station_id, sensor_id, sensor, track, "member", at, first, start)
            return
        ready = self.groups.arm(rule, sensor_id, track.since, at)
        if ready is None:
            track.phase = ARMED
            return
        for member in ready.members:
            other = self.sensors[member].tracks
            member_track = other.get(rule.id) if other is not None else None
            if member_track is not None:
                member_track.phase, member_track.incident = OPEN, ready.key
        track.phase = OPEN
        self._open(station_id, ready.sensor_id, sensor, rule, track, at, start=ready.start)

    def _open(
        self,
        station_id: str,
        sensor_id: str,
        sensor: SensorState,
        rule: CompiledRule,
        track: Track,
        at: float,
        start: float | None = None,
    ) -> None:
        start = track.since if start is None else start
        track.phase, track.incident, track.flapping = OPEN, (sensor_id, start), False
        if rule.rule.flap is not None:
            track.opens = [*(track.opens or []), at][-rule.rule.flap.max_opens :]
        self.groups.opened(rule, sensor_id, start, at)
        self._emit(rule, station_id, sensor_id, sensor, track, "open", at, sensor_id, start)

    def _close(
        self,
        station_id: str,
        sensor_id: str,
        sensor: SensorState,
        rule: CompiledRule,
        track: Track,
        at: float,
    ) -> None:
        assert track.incident is not None
        first, start = track.incident
        track.phase, track.flapping = IDLE, False
        track.evidence, track.flags = None, None
        track.last_cond = False
        if self.groups.leave(rule.id, first, start, sensor_id):
            self._emit(rule, station_id, sensor_id, sensor, track, "cleared", at, first, start)
        if not rule.rule.flap:
            track.incident = None
        if track.removable() and sensor.tracks is not None:
            sensor.tracks.pop(rule.id, None)

    def _emit(
        self,
        rule: CompiledRule,
        station_id: str,
        sensor_id: str,
        sensor: SensorState,
        track: Track,
        state: str,
        at: float,
        first: str,
        start: float,
    ) -> None:
        opening = state != "cleared"
        evidence = (
            tuple(Evidence(_time(t), v) for t, v in (track.evidence or ())) if opening else ()
        )
        last = track.evidence[-1][1] if track.evidence else float("nan")
        if rule.no_data_rule:
            last = at - start if opening else 0.0  # seconds of silence
        members = self.groups.members(rule.id, first, start) or (first,)
        flags = sorted(track.flags or ()) + (["flapping"] if track.flapping else [])
        self._out.append(
            Alert(
                rule_id=rule.id,
                title=rule.rule.title,
                state=state,  # type: ignore[arg-type]
                severity=rule.rule.severity,
                station_id=self.sensors[first].station if first in self.sensors else station_id,
                sensor_id=first,
                kind=rule.rule.kind,
                field=rule.field,
                value=last,
                threshold=rule.threshold(track.memory, at),
                started_at=_time(start),
                at=_time(at),
                target=rule.rule.case.target(),
                evidence=evidence,
                members=members,
                member_id=sensor_id if state == "member" else None,
                flags=tuple(dict.fromkeys(flags)),
            )
        )
        self.stats.transitions[state] = self.stats.transitions.get(state, 0) + 1
        if opening:
            track.evidence = track.evidence[-1:] if track.evidence else None

    def _take(self) -> list[Alert]:
        out, self._out = self._out, []
        return out

    # -- what is open ----------------------------------------------------------------------
    def open_incidents(self) -> list[tuple[str, str, datetime]]:
        """(rule id, first sensor, start) of every open incident."""
        return sorted(
            (rule_id, first, _time(start)) for rule_id, first, start in self.groups.open_keys()
        )

    def state_counts(self) -> dict[str, int]:
        tracks = sum(len(s.tracks) for s in self.sensors.values() if s.tracks)
        return {
            "sensors": len(self.sensors),
            "stations": len(self.stations),
            "tracks": tracks,
            "incidents": len(self.groups.open_keys()),
            "buffered": sum(len(s.buffer) for s in self.stations.values()),
        }

    def adopt_open(self, incidents: Sequence[tuple[str, str, datetime, Sequence[str]]]) -> int:
        """Make cases the store holds open part of the state (a restart whose snapshot is older
        than the case): (rule id, first sensor, start, members). Returns how many were new."""
        adopted = 0
        for rule_id, first, start_dt, members in incidents:
            if rule_id not in self.rule_ids:
                continue
            start = start_dt.timestamp()
            if self.groups.is_open(rule_id, first, start):
                continue
            adopted += 1
            self.groups.restore(rule_id, first, start, list(members) or [first])
            for member in list(members) or [first]:
                sensor = self.sensors.get(member)
                if sensor is not None:  # else its kind and station come with its next reading
                    self._adopt_member(member, sensor)
        return adopted

    def _adopt_member(self, sensor_id: str, sensor: SensorState) -> None:
        for rule_id, first, start in self.groups.open_keys():
            rule = self._rule(sensor_id, sensor, rule_id)
            if rule is None or rule.rule.kind.value != sensor.kind:
                continue
            if self.groups.incidents[(rule_id, first, start)].members.get(sensor_id):
                track = self._track(sensor, rule)
                if track.phase not in (OPEN, CLEARING):
                    track.phase, track.incident = OPEN, (first, start)


def _event_time(item: BufferedReading) -> float:
    return item[0]


def _remember(track: Track, t: float, value: float) -> None:
    evidence = track.evidence
    if evidence is None:
        evidence = track.evidence = []
    evidence.append((t, value))
    if len(evidence) > EVIDENCE_LIMIT:
        del evidence[1]  # keep the first reading (where it began) and the latest ones
