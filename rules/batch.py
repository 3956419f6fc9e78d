"""A batched (numpy) path into the rule engine: many station batches at once, as columns.

Most readings change nothing but their sensor's newest event time and a few counters: a cover at
rest, a pole standing straight. ``BatchEngine.process_chunk`` takes the batches of many stations
as columns (what a columnar decoder hands over), runs the clock check and the reorder buffers'
release for all of them at once, and screens with numpy the released readings that cannot change
anything: a known sensor with no tracks, whose kind has only stateless rules (no baselines, no
``no_data``), none of whose open conditions holds on any of its readings released in the chunk.
Every other reading goes through ``RuleEngine``'s own per-reading code, batch by batch and in
event-time order, so alerts, ``stats`` counters and ``rules.snapshot`` bytes are those of calling
``RuleEngine.process`` batch after batch (tests/rules/test_batch.py).

Readings still waiting for the allowed lateness stay in columns here: ``sync()`` (done by
``snapshot``, ``advance`` and ``drain``) writes them into the stations' buffers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from protocol import Reading
from rules.alerts import Alert
from rules.clock import Row, check_clock
from rules.engine import RuleEngine
from rules.schema import AllOf, Condition, Leaf
from rules.snapshot import snapshot
from rules.stats import EngineStats

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]
Column = Callable[[str], Floats]
VectorTest = Callable[[Column], tuple[Bools, Bools]]
"""A stateless condition over columns: (holds, unknown) per row."""
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


def _objects(items: Sequence[Any]) -> npt.NDArray[Any]:
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out


def _codes(table: dict[str, int], names: list[str], items: Sequence[str]) -> Ints:
    get = table.get
    codes = [get(item, -1) for item in items]
    if -1 in codes:
        for k, item in enumerate(items):
            if codes[k] < 0:
                code = table.get(item)
                if code is None:
                    code = table[item] = len(names)
                    names.append(item)
                codes[k] = code
    return np.array(codes, dtype=np.int64)


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
        self._screens: list[list[VectorTest] | None] = []
        self._known: list[frozenset[str] | None] = []
        self._pending: _Rows | None = None

    # -- the engine's interface ----------------------------------------------------------
    def process(
        self, station_id: str, readings: Sequence[Reading], sent_at: datetime | None = None
    ) -> list[Alert]:
        return self.process_chunk(Chunk.from_batches([(station_id, readings, sent_at)]))

    def advance(self, station_id: str, watermark: datetime) -> list[Alert]:
        self.sync()
        return self.engine.advance(station_id, watermark)

    def drain(self) -> list[Alert]:
        self.sync()
        return self.engine.drain()

    def snapshot(self) -> bytes:
        self.sync()
        return snapshot(self.engine)

    def sync(self) -> RuleEngine:
        """Put the readings waiting here into their stations' reorder buffers."""
        pending, self._pending = self._pending, None
        if pending is None or not len(pending):
            return self.engine
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
        return self.engine

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
        out, when = rows.take(ready), release[ready]
        by = np.lexsort((out.order, out.t, when))
        out, when = out.take(by), when[by]
        screened = self._screen(out, out.t < calls.clock[when])
        rest = ~screened
        self._evaluate(chunk, calls, out.take(rest), when[rest])
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
            _codes(self._sensor_codes, self._sensor_names, chunk.sensor_ids),
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
            rules = self.engine._by_kind.get(name, [])
            tests = [
                vector_test(r.rule.when)
                if r.fast is not None and not r.no_data_rule and r.rule.when is not None
                else None
                for r in rules
            ]
            screens = [test for test in tests if test is not None]
            self._screens.append(screens if len(screens) == len(tests) else None)
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
                    _codes(self._sensor_codes, self._sensor_names, [row[2] for row in buffered]),
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
        passed it. Rows and frontiers sorted together by (station, time), a frontier after a row
        at the same time; the first frontier after a row in its station is found as the smallest
        ``station * width + batch`` key at or after it."""
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
        """Rows that change nothing but counters and their sensor's newest time: counted and
        applied here. Returns which."""
        n = len(rows)
        quiet = np.zeros(n, dtype=np.bool_)
        missing = np.zeros(n, dtype=np.int64)
        unknown = np.zeros(n, dtype=np.bool_)
        for code in np.unique(rows.kind).tolist():
            tests, known = self._screens[code], self._known[code]
            if tests is None:
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
            for test in tests:
                holds, unsure = test(column)
                calm &= ~holds
                lack += unsure
            extra = np.zeros(count, dtype=np.bool_)
            if known is not None:
                for name in rows.values:
                    if name not in known:
                        extra |= ~np.isnan(column(name))
            quiet[sel], missing[sel], unknown[sel] = calm, lack, extra
        calm_sensors = quiet.all()
        candidate = quiet if calm_sensors else quiet & ~np.isin(rows.sensor, rows.sensor[~quiet])
        index = np.flatnonzero(candidate)
        screened = np.zeros(n, dtype=np.bool_)
        if not len(index):
            return screened
        index = index[np.argsort(rows.sensor[index], kind="stable")]
        sensor, t = rows.sensor[index], rows.t[index]
        head = np.ones(len(index), dtype=np.bool_)
        head[1:] = sensor[1:] != sensor[:-1]
        group = np.cumsum(head) - 1
        ok, last = self._untracked(sensor[head])
        down = ~head[1:] & (t[1:] < t[:-1])  # out of order across batches: the plain path
        if down.any():
            ok[group[1:][down]] = False
        previous = np.empty_like(t)
        previous[1:] = t[:-1]
        previous[head] = last
        take = ok[group]
        skipped = take & (t <= previous)
        evaluated = take & ~skipped
        stats = self.engine.stats
        stats.readings_evaluated += int(evaluated.sum())
        stats.late_skipped += int(skipped.sum())
        stats.late_evaluated += int((evaluated & late[index]).sum())
        stats.missing_field += int(missing[index][evaluated].sum())
        stats.unknown_value += int((unknown[index] & evaluated).sum())
        tail = np.append(head[1:], True)
        newer = ok & (t[tail] > last)
        names = self._sensor_names
        sensors = self.engine.sensors
        for code, newest in zip(sensor[head][newer].tolist(), t[tail][newer].tolist(), strict=True):
            sensors[names[code]].last_t = newest
        screened[index[take]] = True
        return screened

    def _untracked(self, codes: Ints) -> tuple[Bools, Floats]:
        """Of these sensors: known with no tracks, and their newest evaluated time."""
        get, names = self.engine.sensors.get, self._sensor_names
        found = [get(names[code]) for code in codes.tolist()]
        ok = np.array([s is not None and s.tracks is None for s in found], dtype=np.bool_)
        last = np.array([s.last_t if s is not None else np.nan for s in found])
        return ok, last

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
