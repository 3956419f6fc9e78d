"""The engine's state as bytes and back: what ingest commits together with what it acknowledges.

A snapshot is JSON (version ``SNAPSHOT_VERSION``): per sensor its station, kind, newest evaluated
reading and the tracks of rules with something going on; per station its watermark, clock offset
evidence and the readings still waiting in its reorder buffer; the open incidents and the sensors
waiting for neighbours. Restoring it with an edited rule set keeps the state of every rule whose
id is still there (its pending hold, its open incident, its baseline) and drops, and counts, the
rest. Timers are rebuilt from the tracks.

Encoded with msgspec: ingest takes a snapshot between two messages, so its encoding holds every
message back; msgspec writes the same JSON 3–4× faster than ``json.dumps`` (10,000 sensors:
68 against 259 ms including building the document, on a slow day; the parsed documents equal).
Non-finite numbers go through ``_num`` first (msgspec would write NaN as ``null``).
"""

from __future__ import annotations

import json
import math
from array import array
from typing import Any

import msgspec

from rules.conditions import BaselineState, Memory
from rules.engine import RuleEngine
from rules.schema import RuleSet
from rules.state import Incident, SensorState, StationState, Track

SNAPSHOT_VERSION = 1
_encode = msgspec.json.Encoder().encode


class SnapshotError(ValueError):
    """A snapshot that cannot be restored, with why."""


def _num(value: float) -> float | str | None:
    if math.isnan(value):
        return None
    if math.isinf(value):
        return "-inf" if value < 0 else "inf"
    return value


def _float(value: Any) -> float:
    if value is None:
        return math.nan
    return float(value)


def _track(track: Track) -> dict[str, Any]:
    out: dict[str, Any] = {"p": track.phase}
    if track.phase:
        out.update(s=track.since, c=track.clear_since, l=track.last_cond, lo=track.lo, hi=track.hi)
    if track.evidence:
        out["e"] = track.evidence
    if track.hits:
        out["h"] = track.hits
    if track.incident:
        out["i"] = list(track.incident)
    if track.opens:
        out["o"] = track.opens
    if track.flapping:
        out["f"] = True
    if track.flags:
        out["g"] = sorted(track.flags)
    if track.memory is not None:
        out["m"] = {
            "prev": {k: list(v) for k, v in track.memory.prev.items()},
            "base": {
                k: [b.mean, b.t, [_num(x) for x in b.profile] if b.profile is not None else None]
                for k, b in track.memory.base.items()
            },
        }
    return out


def _track_from(data: dict[str, Any]) -> Track:
    track = Track()
    track.phase = int(data["p"])
    track.since = float(data.get("s", 0.0))
    track.clear_since = float(data.get("c", 0.0))
    track.last_cond = bool(data.get("l", False))
    track.lo, track.hi = float(data.get("lo", 0.0)), float(data.get("hi", 0.0))
    track.evidence = [(float(t), float(v)) for t, v in data["e"]] if "e" in data else None
    track.hits = [float(h) for h in data["h"]] if "h" in data else None
    track.incident = (str(data["i"][0]), float(data["i"][1])) if "i" in data else None
    track.opens = [float(o) for o in data["o"]] if "o" in data else None
    track.flapping = bool(data.get("f", False))
    track.flags = set(data["g"]) if "g" in data else None
    if "m" in data:
        memory = Memory()
        memory.prev = {k: (float(v[0]), float(v[1])) for k, v in data["m"]["prev"].items()}
        for name, (mean, t, profile) in data["m"]["base"].items():
            bins = array("d", [_float(x) for x in profile]) if profile is not None else None
            memory.base[name] = BaselineState(float(mean), float(t), bins)
        track.memory = memory
    return track


def snapshot(engine: RuleEngine) -> bytes:
    """The whole state of ``engine`` (call between batches)."""
    sensors = {
        sensor_id: {
            "st": s.station,
            "k": s.kind,
            "t": _num(s.last_t),
            **({"r": {rid: _track(tr) for rid, tr in s.tracks.items()}} if s.tracks else {}),
        }
        for sensor_id, s in engine.sensors.items()
    }
    stations = {
        station_id: {
            "wm": _num(s.watermark),
            "clock": _num(s.clock),
            "born": _num(s.born),
            "offsets": s.offsets,
            "buffer": [[t, o, sid, k, v, list(f)] for t, o, sid, k, v, f in s.buffer],
            "scan": _num(s.next_scan),
        }
        for station_id, s in engine.stations.items()
    }
    incidents = [
        [i.rule_id, i.sensor_id, i.start, i.opened, i.where, list(i.members.items())]
        for i in engine.groups.incidents.values()
    ]
    document = {
        "version": SNAPSHOT_VERSION,
        "order": engine._order,
        "sensors": sensors,
        "stations": stations,
        "incidents": incidents,
        "armed": {
            rid: {s: list(v) for s, v in a.items()} for rid, a in engine.groups.armed.items()
        },
    }
    if engine.districts:  # only with overrides (rules.inherit)
        document["districts"] = dict(sorted(engine.districts.items()))
    return _encode(document)


def restore(rules: RuleSet, data: bytes, **engine_options: Any) -> RuleEngine:
    """An engine for ``rules`` carrying on from ``data`` (a ``snapshot``)."""
    try:
        document = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SnapshotError(f"snapshot is not JSON: {exc}") from None
    if not isinstance(document, dict) or document.get("version") != SNAPSHOT_VERSION:
        version = document.get("version") if isinstance(document, dict) else None
        raise SnapshotError(f"snapshot version {version!r} unknown (want {SNAPSHOT_VERSION})")
    engine = RuleEngine(rules, **engine_options)
    known = set(engine.rule_ids)
    try:
        _restore_into(engine, document, known)
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise SnapshotError(f"snapshot is damaged: {exc!r}") from None
    return engine


def _restore_into(engine: RuleEngine, document: dict[str, Any], known: set[str]) -> None:
    engine._order = int(document["order"])
    engine.districts.update({str(k): str(v) for k, v in document.get("districts", {}).items()})
    for station_id, s in document["stations"].items():
        engine.stations[station_id] = StationState(
            watermark=_float(s["wm"]),
            clock=_float(s["clock"]),
            born=_float(s["born"]),
            offsets=[float(o) for o in s["offsets"]],
            buffer=sorted(  # the engine keeps buffers sorted; a hand-made snapshot may not be
                (float(t), int(o), sid, k, v, tuple(f)) for t, o, sid, k, v, f in s["buffer"]
            ),
            next_scan=_float(s["scan"]),
        )
    for sensor_id, s in document["sensors"].items():
        sensor = SensorState(s["st"], s["k"])
        sensor.last_t = _float(s["t"])
        tracks = {}
        for rule_id, data in s.get("r", {}).items():
            if rule_id not in known:
                engine.stats.dropped_tracks += 1
                continue
            tracks[rule_id] = track = _track_from(data)
            if track.memory is None and rule_id in engine._stateful:
                track.memory = Memory()  # the rule became stateful (e.g. above -> drop)
            engine.rearm(sensor_id, sensor, rule_id, track)
        sensor.tracks = tracks or None
        engine.sensors[sensor_id] = sensor
        engine._station(sensor.station).sensors.add(sensor_id)
    for rule_id, first, start, opened, where, members in document["incidents"]:
        if rule_id not in known:
            continue
        engine.groups.incidents[(rule_id, first, float(start))] = Incident(
            rule_id,
            first,
            float(start),
            float(opened),
            (float(where[0]), float(where[1])) if where else None,
            {str(m): bool(v) for m, v in members},
        )
    for rule_id, armed in document["armed"].items():
        if rule_id in known:
            engine.groups.armed[rule_id] = {s: (float(v[0]), float(v[1])) for s, v in armed.items()}
