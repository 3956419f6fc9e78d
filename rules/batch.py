"""A batched (numpy) path into the rule engine: many station batches at once, as columns.

Most readings change nothing but their sensor's newest event time, a few counters and, for a
pressure logger, its baseline: a cover at rest, a pole standing straight, a main at its usual
pressure. ``BatchEngine.process_chunk`` takes the batches of many stations as columns (what a
columnar decoder hands over), runs the clock check and the reorder buffers' release for all of
them at once, and screens with numpy the released readings that cannot change anything else.

The screen *owns* the sensors it can follow: known to the engine, with no track but idle ones of
drop-from-baseline rules. For them it keeps the newest evaluated time and the baselines in
columns (newer than the sensors' records while marked dirty). A reading of an owned sensor is
screened when none of its kind's stateless open conditions holds and it is not low against its
baseline; the baseline learns from it step by step as ``rules.conditions`` does. Every other
reading goes through ``RuleEngine``'s own per-reading code, batch by batch and in event-time
order, after its sensor's columns are written back into its records (the sensor is taken back once
it rests again). Alerts, ``stats`` counters and ``rules.snapshot`` bytes are those of calling
``RuleEngine.process`` batch after batch (tests/rules/test_batch.py).

Readings still waiting for the allowed lateness stay in columns here. ``snapshot``, ``advance``
and ``drain`` write everything into the engine's records first; ``sync()`` also drops ownership,
so that the engine can then be used directly.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from protocol import Reading
from rules.alerts import Alert
from rules.clock import Row, check_clock
from rules.compiled import CompiledRule
from rules.conditions import DEFAULT_BASELINE, HOUR_S, SLOT_S, SLOTS
from rules.engine import RuleEngine
from rules.schema import AllOf, Baseline, Condition, Leaf
from rules.snapshot import snapshot
from rules.state import IDLE, SensorState
from rules.stats import EngineStats

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]
Column = Callable[[str], Floats]
VectorTest = Callable[[Column], tuple[Bools, Bools]]
"""A stateless condition over columns: (holds, unknown) per row."""
FEW_BATCHES = 8
"""Up to this many batches of one station in a chunk, releases are found round by round."""
FLAGS: tuple[tuple[str, ...], ...] = ((), ("clock_skew",), ("clock_reset",))
SKEW, RESET = 1, 2


@dataclass(frozen=True, slots=True)
class Chunk:
    """The readings of consecutive station batches as columns; batch ``i`` is rows
    ``starts[i]:starts[i + 1]`` of station ``stations[i]``, sent at ``sent_at[i]`` (epoch s,
    NaN: not given). ``values`` has one column per value name, NaN where a reading lacks it;
    ``dicts`` optionally the readings' own value mappings (kept as given, in snapshots)."""

    stations: Sequence[str]
    sent_at: Floats
    starts: Ints
    sensor_ids: Sequence[str]
    kinds: Sequence[str]
    ts: Floats
    values: Mapping[str, Floats]
    dicts: Sequence[dict[str, float]] | None = None

    @classmethod
    def from_batches(
        cls, batches: Iterable[tuple[str, Sequence[Reading], datetime | None]]
    ) -> Chunk:
        stations: list[str] = []
        sent: list[float] = []
        starts = [0]
        ids: list[str] = []
        kinds: list[str] = []
        ts: list[float] = []
        dicts: list[dict[str, float]] = []
        for station_id, readings, sent_at in batches:
            stations.append(station_id)
            sent.append(sent_at.timestamp() if sent_at is not None else np.nan)
            for r in readings:
                ids.append(r.sensor_id)
                kinds.append(r.kind.value)
                ts.append(r.ts.timestamp())
                dicts.append(r.values)
            starts.append(len(ids))
        return cls(
            stations,
            np.array(sent, dtype=np.float64),
            np.array(starts, dtype=np.int64),
            ids,
            kinds,
            np.array(ts, dtype=np.float64),
            columns(dicts),
            dicts,
        )


def columns(dicts: Sequence[Mapping[str, float]]) -> dict[str, Floats]:
    """Value mappings as one column per name (NaN where absent)."""
    names = dict.fromkeys(name for values in dicts for name in values)
    return {
        name: np.array([values.get(name, np.nan) for values in dicts], dtype=np.float64)
        for name in names
    }


def _leaf(leaf: Leaf) -> VectorTest | None:
    name = leaf.field
    compare: Callable[[Floats], Bools]
    if leaf.above is not None:
        above = leaf.above
        compare = lambda v: v > above  # noqa: E731
    elif leaf.below is not None:
        below = leaf.below
        compare = lambda v: v < below  # noqa: E731
    elif leaf.outside is not None:
        low, high = leaf.outside
        compare = lambda v: (v < low) | (v > high)  # noqa: E731
    else:
        return None  # rates and baselines remember readings: not for the screen
    return lambda column: (compare(v := column(name)), np.isnan(v))


def vector_test(condition: Condition) -> VectorTest | None:
    """``condition`` over columns, with ``rules.conditions``' three-valued logic."""
    if isinstance(condition, Leaf):
        return _leaf(condition)
    every = isinstance(condition, AllOf)
    parts = [
        vector_test(c) for c in (condition.all if isinstance(condition, AllOf) else condition.any)
    ]
    tests = [p for p in parts if p is not None]
    if len(tests) != len(parts):
        return None

    def test(column: Column) -> tuple[Bools, Bools]:
        outcomes = [part(column) for part in tests]
        holds = [h for h, _ in outcomes]
        unknown = [u for _, u in outcomes]
        if every:
            true = np.logical_and.reduce(holds)
            false = np.logical_or.reduce([~(h | u) for h, u in outcomes])
            return true, ~(true | false)
        true = np.logical_or.reduce(holds)
        return true, ~true & np.logical_or.reduce(unknown)

    return test


class _Baseline:
    """A drop-from-baseline rule's memory of the sensors the screen owns, as columns: the
    rolling mean, its time and the time-of-day profile, one row per sensor (``row``: sensor code
    to row, -1 none). For a sensor in screen mode these columns are newer than the
    ``BaselineState`` in its track; ``rules.conditions`` is followed step by step, so the numbers
    are the plain path's to the last bit (exp from ``math``, not numpy's)."""

    def __init__(self, rule: CompiledRule, leaf: Leaf) -> None:
        self.rule = rule
        self.field = leaf.field
        self.drop, self.fraction = leaf.drop, leaf.drop_fraction
        self.spec: Baseline = leaf.baseline or DEFAULT_BASELINE
        self.row = np.full(0, -1, dtype=np.int64)
        self.mean = np.zeros(0)
        self.t = np.zeros(0)
        self.profile = np.zeros((0, SLOTS if self.spec.profile else 0))
        self.rows = 0

    def grow_sensors(self, capacity: int) -> None:
        extra = capacity - len(self.row)
        if extra > 0:
            self.row = np.concatenate([self.row, np.full(extra, -1, dtype=np.int64)])

    def load(self, code: int, mean: float, t: float, profile: array[float] | None) -> None:
        """Take a sensor's baseline from its ``BaselineState``."""
        row = int(self.row[code])
        if row < 0:
            row = self.row[code] = self.rows
            self.rows += 1
            if row >= len(self.mean):
                size = max(64, 2 * len(self.mean))
                self.mean = np.resize(self.mean, size)
                self.t = np.resize(self.t, size)
                self.profile = np.resize(self.profile, (size, self.profile.shape[1]))
        self.mean[row], self.t[row] = mean, t
        if profile is not None and self.profile.shape[1]:
            self.profile[row] = np.frombuffer(profile, dtype=np.float64)

    def store(self, code: int, sensor: SensorState) -> None:
        """Write a sensor's baseline back into its ``BaselineState``."""
        row = int(self.row[code])
        assert sensor.tracks is not None
        memory = sensor.tracks[self.rule.id].memory
        assert memory is not None
        base = memory.base[self.field]
        base.mean, base.t = float(self.mean[row]), float(self.t[row])
        if base.profile is not None:
            base.profile = array("d", self.profile[row].tobytes())

    def step(self, codes: Ints, t: Floats, value: Floats, rank: Ints) -> _Learned:
        """Learn from the readings of a chunk (each sensor's in order: ``rank`` 0, 1, ... within
        it) as ``rules.conditions._drop`` would, on copies: ``commit`` keeps what was learned for
        the sensors none of whose readings is low (``low``, per reading); the others go the plain
        way, from the baseline they had before."""
        sensors, local = np.unique(codes, return_inverse=True)
        rows = self.row[sensors]
        mean, seen = self.mean[rows], self.t[rows]
        profile = self.profile[rows] if self.profile.shape[1] else None
        low = np.zeros(len(sensors), dtype=np.bool_)
        spec, offset = self.spec, self.spec.utc_offset_h * HOUR_S
        span = spec.learn_days * SLOT_S
        for r in range(int(rank.max()) + 1 if len(rank) else 0):
            at = rank == r
            k, tt, v = local[at], t[at], value[at]
            m = mean[k]
            if profile is not None:
                slot = ((tt + offset) % 86_400.0 // SLOT_S).astype(np.int64)
                usual = profile[k, slot]
                unseen = np.isnan(usual)
                expected = np.where(unseen, m, np.minimum(m, usual))
            else:
                expected = m
            drop = self.drop if self.drop is not None else expected * (self.fraction or 0.0)
            low[k] |= v < expected - drop
            elapsed = np.maximum(0.0, tt - seen[k])
            if profile is not None:
                weight = np.minimum(1.0, elapsed / span)
                old = np.where(unseen, m, usual)
                profile[k, slot] = old + weight * (v - old)
            decay = np.array([math.exp(x) for x in (-elapsed / spec.tau).tolist()])
            mean[k] = m + (1.0 - decay) * (v - m)
            seen[k] = np.maximum(seen[k], tt)
        return _Learned(rows, mean, seen, profile, low[local], local)

    def commit(self, learned: _Learned, keep: Bools) -> None:
        """Keep what ``step`` learned for the sensors of the readings ``keep`` marks."""
        kept = np.unique(learned.local[keep])
        rows = learned.rows[kept]
        self.mean[rows], self.t[rows] = learned.mean[kept], learned.t[kept]
        if learned.profile is not None:
            self.profile[rows] = learned.profile[kept]


@dataclass(frozen=True, slots=True)
class _Learned:
    """What ``_Baseline.step`` learned, not yet kept."""

    rows: Ints
    """Baseline rows of the sensors, in the order of their codes."""
    mean: Floats
    t: Floats
    profile: Floats | None
    low: Bools
    """Per reading: its sensor had a low reading."""
    local: Ints
    """Per reading: its sensor's index in ``rows``."""


@dataclass(slots=True)
class _KindScreen:
    """How the screen tests the readings of one kind: its stateless rules as vector tests, its
    baseline rules as columns."""

    tests: list[VectorTest]
    baselines: list[_Baseline] = field(default_factory=list)


def _kind_screen(rules: Sequence[CompiledRule]) -> _KindScreen | None:
    screen = _KindScreen([])
    for rule in rules:
        when = rule.rule.when
        if rule.no_data_rule or when is None:
            return None
        if rule.fast is not None:
            test = vector_test(when)
            if test is None:
                return None
            screen.tests.append(test)
        elif isinstance(when, Leaf) and when.needs_baseline:
            screen.baselines.append(_Baseline(rule, when))
        else:
            return None  # rates, baselines inside all/any: reading by reading
    return screen


@dataclass(slots=True)
class _Rows:
    """Checked readings as columns: waiting in a buffer, or released by a batch."""

    t: Floats
    order: Ints
    station: Ints
    sensor: Ints
    kind: Ints
    flags: Ints
    arrival: Ints
    """Index of the batch of the chunk that brought the row (-1: an earlier chunk)."""
    values: dict[str, Floats]
    dicts: npt.NDArray[Any] | None

    def __len__(self) -> int:
        return len(self.t)

    def take(self, index: Ints | Bools) -> _Rows:
        return _Rows(
            self.t[index],
            self.order[index],
            self.station[index],
            self.sensor[index],
            self.kind[index],
            self.flags[index],
            self.arrival[index],
            {name: column[index] for name, column in self.values.items()},
            self.dicts[index] if self.dicts is not None else None,
        )

    @staticmethod
    def join(parts: Sequence[_Rows]) -> _Rows:
        if len(parts) == 1:
            return parts[0]
        names = dict.fromkeys(name for part in parts for name in part.values)
        none = any(part.dicts is None for part in parts)

        def cat(pick: Callable[[_Rows], Any]) -> Any:
            return np.concatenate([pick(part) for part in parts])

        def column(name: str) -> Floats:
            return np.concatenate(
                [part.values.get(name, np.full(len(part), np.nan)) for part in parts]
            )

        return _Rows(
            cat(lambda p: p.t),
            cat(lambda p: p.order),
            cat(lambda p: p.station),
            cat(lambda p: p.sensor),
            cat(lambda p: p.kind),
            cat(lambda p: p.flags),
            cat(lambda p: p.arrival),
            {name: column(name) for name in names},
            None if none else cat(lambda p: p.dicts),
        )


def rank_within(groups: Ints) -> Ints:
    """0, 1, 2, ... within each run of equal values of a sorted array."""
    if not len(groups):
        return groups
    starts = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]])
    return np.arange(len(groups)) - np.repeat(starts, np.diff(np.r_[starts, len(groups)]))


def _objects(items: Sequence[Any]) -> npt.NDArray[Any]:
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out


def _codes(table: dict[str, int], names: list[str], items: Sequence[str]) -> Ints:
    """Each item's code in ``table``, new items numbered as they come (``names``: by code)."""
    try:
        return np.fromiter(map(table.__getitem__, items), dtype=np.int64, count=len(items))
    except KeyError:
        pass
    for item in items:
        if item not in table:
            table[item] = len(names)
            names.append(item)
    return np.fromiter(map(table.__getitem__, items), dtype=np.int64, count=len(items))


@dataclass(slots=True)
class _Calls:
    """What each batch of a chunk did to its station's event time."""

    station: Ints
    frontier: Floats
    """The release frontier after the batch (NaN: an empty batch, which releases nothing)."""
    clock: Floats
    """The station's evaluation clock before the batch's release."""


class BatchEngine:
    """``RuleEngine.process`` for many batches at once (see the module's doc). Use this object's
    methods, not the wrapped engine's, while readings may wait here (or ``sync()`` first)."""

    def __init__(self, engine: RuleEngine) -> None:
        self.engine = engine
        self._station_codes: dict[str, int] = {}
        self._station_names: list[str] = []
        self._sensor_codes: dict[str, int] = {}
        self._sensor_names: list[str] = []
        self._kind_codes: dict[str, int] = {}
        self._kind_names: list[str] = []
        self._screens: list[_KindScreen | None] = []
        self._known: list[frozenset[str] | None] = []
        self._pending: _Rows | None = None
        # Sensors the screen owns (``_owned``): their newest evaluated time and their baselines
        # live in these columns, newer than their ``SensorState`` while ``_dirty``.
        self._owned = np.zeros(0, dtype=np.bool_)
        self._dirty = np.zeros(0, dtype=np.bool_)
        self._last = np.zeros(0)
        self._scratch = np.zeros(0, dtype=np.bool_)
        self._sensor_kind = np.zeros(0, dtype=np.int64)

    # -- the engine's interface ----------------------------------------------------------
    def process(
        self, station_id: str, readings: Sequence[Reading], sent_at: datetime | None = None
    ) -> list[Alert]:
        return self.process_chunk(Chunk.from_batches([(station_id, readings, sent_at)]))

    def advance(self, station_id: str, watermark: datetime) -> list[Alert]:
        self._flush()
        return self.engine.advance(station_id, watermark)

    def drain(self) -> list[Alert]:
        self._flush()
        return self.engine.drain()

    def snapshot(self) -> bytes:
        self._flush()
        return snapshot(self.engine)

    def sync(self) -> RuleEngine:
        """Hand the engine over: readings waiting here go into their stations' reorder buffers
        and every sensor's state into its records (the engine may then be used directly)."""
        self._flush()
        self._owned[:] = False
        return self.engine

    def _flush(self) -> None:
        """Write what only this object holds into the engine's records."""
        self._store(np.flatnonzero(self._dirty), release=False)
        pending, self._pending = self._pending, None
        if pending is None or not len(pending):
            return
        pending = pending.take(np.lexsort((pending.order, pending.t, pending.station)))
        waiting = self._tuples(pending)
        cuts = np.flatnonzero(np.diff(pending.station)) + 1
        for part, code in zip(
            np.split(np.arange(len(pending)), cuts),
            pending.station[np.concatenate([[0], cuts])].tolist(),
            strict=True,
        ):
            station = self.engine.stations[self._station_names[code]]
            rows = [waiting[k] for k in part.tolist()]
            station.buffer = sorted(station.buffer + rows) if station.buffer else rows

    # -- the sensors the screen owns -------------------------------------------------------
    def _sensor_codes_of(self, ids: Sequence[str]) -> Ints:
        codes = _codes(self._sensor_codes, self._sensor_names, ids)
        capacity = len(self._sensor_names)
        if capacity > len(self._owned):
            size = max(capacity, 2 * len(self._owned), 1024)
            extra = size - len(self._owned)
            self._owned = np.concatenate([self._owned, np.zeros(extra, dtype=np.bool_)])
            self._dirty = np.concatenate([self._dirty, np.zeros(extra, dtype=np.bool_)])
            self._last = np.concatenate([self._last, np.full(extra, -np.inf)])
            self._scratch = np.zeros(size, dtype=np.bool_)
            self._sensor_kind = np.concatenate(
                [self._sensor_kind, np.full(extra, -1, dtype=np.int64)]
            )
            for screen in self._screens:
                for base in screen.baselines if screen is not None else ():
                    base.grow_sensors(size)
        return codes

    def _store(self, codes: Ints, *, release: bool = True) -> None:
        """Write back what changed of these sensors into their records; ``release``: and give
        them up (the plain path will see them)."""
        if not len(codes):
            return
        dirty = codes[self._dirty[codes]]
        sensors, names = self.engine.sensors, self._sensor_names
        for code, last, kind in zip(
            dirty.tolist(),
            self._last[dirty].tolist(),
            self._sensor_kind[dirty].tolist(),
            strict=True,
        ):
            sensor = sensors[names[code]]
            sensor.last_t = last
            screen = self._screens[kind]
            for base in screen.baselines if screen is not None else ():
                base.store(code, sensor)
        self._dirty[codes] = False
        if release:
            self._owned[codes] = False

    def _adopt(self, codes: Ints) -> None:
        """Take over those of these sensors that the screen can follow: known, and with no
        track but idle ones of baseline rules (whose memory moves into columns)."""
        sensors, names = self.engine.sensors, self._sensor_names
        for code in np.unique(codes).tolist():
            sensor = sensors.get(names[code])
            if sensor is None:
                continue
            kind = self._kind_codes.get(sensor.kind, -1)
            screen = self._screens[kind] if kind >= 0 else None
            if (
                screen is None
                or not self._followable(sensor, screen)
                or self.engine.has_overrides(names[code])  # its own thresholds: not the kind's
            ):
                continue
            for base in screen.baselines:
                assert sensor.tracks is not None
                memory = sensor.tracks[base.rule.id].memory
                assert memory is not None
                state = memory.base[base.field]
                base.load(code, state.mean, state.t, state.profile)
            self._owned[code] = True
            self._last[code] = sensor.last_t
            self._sensor_kind[code] = kind

    @staticmethod
    def _followable(sensor: SensorState, screen: _KindScreen) -> bool:
        tracks = sensor.tracks or {}
        if len(tracks) != len(screen.baselines):
            return not tracks and not screen.baselines
        for base in screen.baselines:
            track = tracks.get(base.rule.id)
            if track is None or track.phase != IDLE or track.memory is None:
                return False
            if track.memory.prev or base.field not in track.memory.base:
                return False
        return True

    # -- one chunk -------------------------------------------------------------------------
    def process_chunk(self, chunk: Chunk) -> list[Alert]:
        """The alerts of ``RuleEngine.process`` on each batch of ``chunk`` in turn."""
        engine = self.engine
        if engine._no_data_min is not None:  # silence scans follow every reading: no screen
            return self._one_by_one(chunk)
        calls, new = self._check_clocks(chunk)
        parts = [part for part in (self._pending, *self._absorb(chunk), new) if part is not None]
        rows = _Rows.join(parts)
        batches = len(chunk.stations)
        release = self._release_index(rows, calls, batches)
        ready = release < batches
        self._pending = rows.take(~ready) if not ready.all() else None
        if self._pending is not None:
            self._pending.arrival[:] = -1  # waiting from an earlier chunk from now on
        picked = np.flatnonzero(ready)
        by = picked[np.lexsort((rows.order[picked], rows.t[picked], release[picked]))]
        out, when = rows.take(by), release[by]
        screened = self._screen(out, out.t < calls.clock[when])
        rest = out.take(~screened)
        self._store(rest.sensor)
        self._evaluate(chunk, calls, rest, when[~screened])
        self._adopt(rest.sensor)
        return engine._take()

    def _one_by_one(self, chunk: Chunk) -> list[Alert]:
        self.sync()
        dicts = chunk.dicts or self._dicts(chunk.values, len(chunk.ts))
        ts, out = chunk.ts.tolist(), []
        bounds = chunk.starts.tolist()
        for i, station_id in enumerate(chunk.stations):
            rows = [
                (ts[k], chunk.sensor_ids[k], chunk.kinds[k], dicts[k])
                for k in range(bounds[i], bounds[i + 1])
            ]
            sent = float(chunk.sent_at[i])
            out += self.engine.process_rows(station_id, rows, None if np.isnan(sent) else sent)
        return out

    def _check_clocks(self, chunk: Chunk) -> tuple[_Calls, _Rows]:
        """``rules.clock.check_clock`` for every batch: the rows as checked, the watermarks."""
        engine, policy, stats = self.engine, self.engine.clock_policy, self.engine.stats
        counts = np.diff(chunk.starts)
        batches, n = len(chunk.stations), len(chunk.ts)
        batch_of = np.repeat(np.arange(batches), counts)
        ts = chunk.ts
        stations = [engine._station(station_id) for station_id in chunk.stations]
        full = counts > 0
        heads = chunk.starts[:-1][full]
        sent = chunk.sent_at.astype(np.float64, copy=True)
        newest = np.full(batches, -np.inf)
        anchor = np.full(batches, -np.inf)
        n_reset = np.zeros(batches, dtype=np.int64)
        if n:
            newest[full] = np.maximum.reduceat(ts, heads)
            sent = np.where(np.isnan(sent), newest, sent)
        sent_row = sent[batch_of]
        born = np.array([station.born for station in stations], dtype=np.float64)
        reset = (np.abs(ts - sent_row) > policy.max_clock_error) | (ts < born[batch_of])
        any_reset = bool(reset.any())
        if any_reset:
            n_reset[full] = np.add.reduceat(reset.astype(np.int64), heads)
            newest[full] = np.maximum.reduceat(np.where(reset, -np.inf, ts), heads)
            anchor[full] = np.maximum.reduceat(np.where(reset, ts, -np.inf), heads)
        codes = _codes(self._station_codes, self._station_names, chunk.stations)
        correction = np.zeros(batches)
        frontier = np.full(batches, np.nan)
        clock = np.full(batches, np.nan)
        clocks: dict[int, float] = {}
        counts_l, resets_l, newest_l = counts.tolist(), n_reset.tolist(), newest.tolist()
        sent_l, codes_l = sent.tolist(), codes.tolist()
        anchor_l = anchor.tolist()
        for i in np.flatnonzero(full).tolist():
            station, at = stations[i], sent_l[i]
            good, resets = counts_l[i] - resets_l[i], resets_l[i]
            # the clock check itself on one row standing for the batch's good ones (their
            # newest) and one for its reset ones (their anchor): what it decides is the same
            probe: list[Row] = [(newest_l[i], "", "", {})] if good else []
            if resets:
                probe.append((anchor_l[i], "", "", {}))
            seen = EngineStats()
            checked = check_clock(station, probe, at, policy, seen)
            if seen.clock_skew_corrected:
                correction[i] = min(station.offsets)
                stats.clock_skew_corrected += good
            stats.clock_reset_flagged += resets
            if checked.watermark > station.watermark:
                station.watermark = checked.watermark
            frontier[i] = station.watermark - policy.allowed_lateness
            before = clocks.get(codes_l[i], station.clock)
            clock[i] = before
            clocks[codes_l[i]] = max(before, frontier[i])
        shift_row = correction[batch_of]
        t = ts + shift_row
        flags = np.where(shift_row != 0.0, SKEW, 0)
        first = engine._order + 1
        engine._order += n
        if any_reset:
            t = np.where(reset, sent_row - (anchor[batch_of] - ts), t)
            flags = np.where(reset, RESET, flags)
            order = np.empty(n, dtype=np.int64)
            order[np.lexsort((np.arange(n), reset, batch_of))] = np.arange(first, first + n)
        else:
            order = np.arange(first, first + n, dtype=np.int64)
        rows = _Rows(
            t,
            order,
            codes[batch_of],
            self._sensor_codes_of(chunk.sensor_ids),
            self._kind_index(chunk.kinds),
            flags.astype(np.int64),
            batch_of.astype(np.int64),
            dict(chunk.values),
            _objects(chunk.dicts) if chunk.dicts is not None else None,
        )
        return _Calls(codes, frontier, clock), rows

    def _kind_index(self, kinds: Sequence[str]) -> Ints:
        known = len(self._kind_names)
        codes = _codes(self._kind_codes, self._kind_names, kinds)
        for name in self._kind_names[known:]:
            screen = _kind_screen(self.engine._by_kind.get(name, []))
            for base in screen.baselines if screen is not None else ():
                base.grow_sensors(len(self._owned))
            self._screens.append(screen)
            self._known.append(self.engine._known_values.get(name))  # type: ignore[call-overload]
        return codes

    def _absorb(self, chunk: Chunk) -> list[_Rows]:
        """Readings a ``sync()`` (or the plain engine) left in the chunk's stations' buffers."""
        out = []
        for station_id in dict.fromkeys(chunk.stations):
            station = self.engine.stations[station_id]
            if not station.buffer:
                continue
            buffered, station.buffer = station.buffer, []
            n = len(buffered)
            dicts = [row[4] for row in buffered]
            flags = [FLAGS.index(row[5]) for row in buffered]
            code = self._station_codes[station_id]
            out.append(
                _Rows(
                    np.array([row[0] for row in buffered], dtype=np.float64),
                    np.array([row[1] for row in buffered], dtype=np.int64),
                    np.full(n, code, dtype=np.int64),
                    self._sensor_codes_of([row[2] for row in buffered]),
                    self._kind_index([row[3] for row in buffered]),
                    np.array(flags, dtype=np.int64),
                    np.full(n, -1, dtype=np.int64),
                    columns(dicts),
                    _objects(dicts),
                )
            )
        return out

    @staticmethod
    def _release_index(rows: _Rows, calls: _Calls, batches: int) -> Ints:
        """The batch whose release evaluates each row (``batches``: none of this chunk): the
        first batch of its station, not before the one that brought it, whose frontier has
        passed it. A station's frontier never goes back, so when each station has few batches
        in the chunk its j-th batch is tried for every row at once, j = 0, 1, ..."""
        made = np.flatnonzero(~np.isnan(calls.frontier))
        station = calls.station[made]
        by = np.argsort(station, kind="stable")
        rank = rank_within(station[by])
        rounds = int(rank.max()) + 1 if len(rank) else 0
        if rounds > FEW_BATCHES:
            return BatchEngine._release_index_sorted(rows, calls, batches)
        nth = np.full((int(station.max()) + 1 if len(station) else 1, rounds), batches)
        nth[station[by], rank] = made[by]
        frontier = np.append(calls.frontier, np.inf)
        found = np.full(len(rows), batches)
        inside = rows.station < len(nth)
        for j in range(rounds):
            batch = np.where(inside, nth[np.minimum(rows.station, len(nth) - 1), j], batches)
            hit = (found == batches) & (batch >= rows.arrival) & (frontier[batch] >= rows.t)
            hit &= batch < batches
            found[hit] = batch[hit]
        return found

    @staticmethod
    def _release_index_sorted(rows: _Rows, calls: _Calls, batches: int) -> Ints:
        """``_release_index`` for chunks with many batches of a station: rows and frontiers
        sorted together by (station, time), a frontier after a row at the same time; the first
        frontier after a row in its station is the smallest ``station * width + batch`` key at
        or after it."""
        made = np.flatnonzero(~np.isnan(calls.frontier))
        n, m = len(rows), len(made)
        station = np.concatenate([rows.station, calls.station[made]])
        value = np.concatenate([rows.t, calls.frontier[made]])
        kind = np.concatenate([np.zeros(n, dtype=np.int64), np.ones(m, dtype=np.int64)])
        batch = np.concatenate([np.zeros(n, dtype=np.int64), made])
        by = np.lexsort((batch, kind, value, station))
        width = batches + 1
        big = np.iinfo(np.int64).max
        key = np.where(kind == 1, station * width + batch, big)[by]
        after = np.minimum.accumulate(key[::-1])[::-1]
        where = np.empty(n + m, dtype=np.int64)
        where[by] = np.arange(n + m)
        found = after[where[:n]]
        first = np.where(found // width == rows.station, found % width, batches)
        return np.where(first < batches, np.maximum(first, rows.arrival), batches)

    def _screen(self, rows: _Rows, late: Bools) -> Bools:
        """Rows that change nothing but counters, their sensor's newest time and its baselines:
        counted and applied here. Returns which."""
        n = len(rows)
        quiet = self._owned[rows.sensor]
        missing = np.zeros(n, dtype=np.int64)
        unknown = np.zeros(n, dtype=np.bool_)
        kinds = np.unique(rows.kind).tolist()
        for code in kinds:
            screen, known = self._screens[code], self._known[code]
            if screen is None:
                continue
            sel = rows.kind == code
            count = int(sel.sum())
            whole = count == n

            def column(name: str, sel: Bools = sel, whole: bool = whole, m: int = count) -> Floats:
                found = rows.values.get(name)
                if found is None:
                    return np.full(m, np.nan)
                return found if whole else found[sel]

            calm = np.ones(count, dtype=np.bool_)
            lack = np.zeros(count, dtype=np.int64)
            for test in screen.tests:
                holds, unsure = test(column)
                calm &= ~holds
                lack += unsure
            for base in screen.baselines:
                lack += np.isnan(column(base.field))
            extra = np.zeros(count, dtype=np.bool_)
            if known is not None:
                for name in rows.values:
                    if name not in known:
                        extra |= ~np.isnan(column(name))
            quiet[sel] &= calm
            missing[sel], unknown[sel] = lack, extra
        if quiet.all():
            candidate = quiet
        else:  # a sensor with a reading the screen cannot take goes the plain way entirely
            busy = self._scratch
            busy[rows.sensor[~quiet]] = True
            candidate = quiet & ~busy[rows.sensor]
            busy[rows.sensor[~quiet]] = False
        index = np.flatnonzero(candidate)
        screened = np.zeros(n, dtype=np.bool_)
        if not len(index):
            return screened
        index = index[np.argsort(rows.sensor[index], kind="stable")]
        sensor, t = rows.sensor[index], rows.t[index]
        head = np.ones(len(index), dtype=np.bool_)
        head[1:] = sensor[1:] != sensor[:-1]
        group = np.cumsum(head) - 1
        last = self._last[sensor[head]]
        ok = np.ones(len(last), dtype=np.bool_)
        down = ~head[1:] & (t[1:] < t[:-1])  # out of order across batches: the plain path
        if down.any():
            ok[group[1:][down]] = False
        previous = np.empty_like(t)
        previous[1:] = t[:-1]
        previous[head] = last
        evaluated = t > previous
        steps: list[tuple[_Baseline, _Learned, Ints]] = []
        for code in kinds:
            screen = self._screens[code]
            if screen is None or not screen.baselines:
                continue
            learn = evaluated & ok[group] & (rows.kind[index] == code)
            at = np.flatnonzero(learn)
            if not len(at):
                continue
            g = group[at]
            for base in screen.baselines:
                value = rows.values.get(base.field)
                if value is None:
                    continue
                v = value[index[at]]
                has = ~np.isnan(v)
                learned = base.step(sensor[at][has], t[at][has], v[has], rank_within(g[has]))
                ok[g[has][learned.low]] = False
                steps.append((base, learned, g[has]))
        for base, learned, g in steps:  # only where no baseline found a low reading
            base.commit(learned, ok[g])
        take = ok[group]
        evaluated &= take
        stats = self.engine.stats
        stats.readings_evaluated += int(evaluated.sum())
        stats.late_skipped += int((take & ~evaluated).sum())
        stats.late_evaluated += int((evaluated & late[index]).sum())
        stats.missing_field += int(missing[index][evaluated].sum())
        stats.unknown_value += int((unknown[index] & evaluated).sum())
        tail = np.append(head[1:], True)
        newest = np.maximum(last, t[tail])
        codes = sensor[head][ok]
        self._last[codes] = newest[ok]
        self._dirty[codes] = True
        screened[index[take]] = True
        return screened

    def _evaluate(self, chunk: Chunk, calls: _Calls, rows: _Rows, when: Ints) -> None:
        """The plain engine's release, batch by batch, for the rows the screen left."""
        engine = self.engine
        batches = len(chunk.stations)
        bounds = np.searchsorted(when, np.arange(batches + 1)).tolist()
        tuples = self._tuples(rows)
        frontier = calls.frontier.tolist()
        for i, station_id in enumerate(chunk.stations):
            if frontier[i] != frontier[i]:  # an empty batch: releases nothing
                continue
            station = engine.stations[station_id]
            for t, _order, sensor_id, kind, values, flags in tuples[bounds[i] : bounds[i + 1]]:
                if t < station.clock:
                    late = (*flags, "late")
                    engine._reading(station_id, station, t, sensor_id, kind, values, late)
                    continue
                engine._advance(station_id, station, t, before=True)
                engine._reading(station_id, station, t, sensor_id, kind, values, flags)
            if frontier[i] > station.clock:
                engine._advance(station_id, station, frontier[i])

    def _tuples(
        self, rows: _Rows
    ) -> list[tuple[float, int, str, str, dict[str, float], tuple[str, ...]]]:
        """Rows as the engine buffers them."""
        sensors, kinds = self._sensor_names, self._kind_names
        dicts = (
            rows.dicts.tolist() if rows.dicts is not None else self._dicts(rows.values, len(rows))
        )
        return [
            (t, order, sensors[s], kinds[k], values, FLAGS[f])
            for t, order, s, k, values, f in zip(
                rows.t.tolist(),
                rows.order.tolist(),
                rows.sensor.tolist(),
                rows.kind.tolist(),
                dicts,
                rows.flags.tolist(),
                strict=True,
            )
        ]

    @staticmethod
    def _dicts(values: Mapping[str, Floats], n: int) -> list[dict[str, float]]:
        names = list(values)
        lists = [values[name].tolist() for name in names]
        return (
            [
                {name: v for name, v in zip(names, row, strict=True) if v == v}
                for row in zip(*lists, strict=True)
            ]
            if names
            else [{} for _ in range(n)]
        )
