"""State that survives: snapshots, restarts mid-incident, rule edits that keep an id."""

from __future__ import annotations

import json

import pytest

from rules import SnapshotError, restore, snapshot
from tests.rules.harness import Feed, at, rule, rules_yaml, short

HOLD = rules_yaml(
    rule(
        "when: {field: tilt_deg, above: 20}, hold: 5,"
        " clear: {when: {field: tilt_deg, below: 8}, hold: 3}"
    )
)


def _restarted(feed: Feed, text: str | None = None) -> Feed:
    data = snapshot(feed.engine)
    again = Feed(text or HOLD)
    again.engine = restore(again.rules, data, clock=feed.engine.clock_policy)
    return again


def test_restart_mid_incident_opens_no_second_case_and_clears_on_recovery() -> None:
    feed = Feed(HOLD)
    assert feed.series([1, 30, 30, 30, 30, 30, 30, 30]) == [("open", "c1", 1, 6)]
    again = _restarted(feed)
    assert again.series([30, 30, 30], start=8) == []
    assert again.series([1, 1, 1, 1], start=11) == [("cleared", "c1", 1, 14)]


def test_restart_mid_hold_keeps_the_pending_hold() -> None:
    feed = Feed(HOLD)
    feed.series([1, 30, 30, 30])
    again = _restarted(feed)
    assert again.series([30, 30, 30], start=4) == [("open", "c1", 1, 6)]


def test_restart_mid_clear_keeps_the_clear_timer() -> None:
    feed = Feed(HOLD)
    feed.series([30] * 6 + [1, 1])
    again = _restarted(feed)
    assert again.engine.advance("st-1", at(20, 1).ts) != []


def test_buffered_readings_are_in_the_snapshot() -> None:
    feed = Feed(HOLD, lateness=10)
    feed.series([30] * 8)  # all still inside the allowed lateness
    assert feed.engine.state_counts()["buffered"] > 0
    again = _restarted(feed)
    assert [a[0] for a in short(again.engine.drain())] == ["open"]


def test_a_snapshot_survives_json_and_restores_to_the_same_bytes() -> None:
    feed = Feed(HOLD)
    feed.series([1, 30, 30, 30, 30, 30, 30, 5])
    data = snapshot(feed.engine)
    json.loads(data)
    assert snapshot(restore(feed.rules, data, clock=feed.engine.clock_policy)) == data


def test_a_rule_edited_under_its_id_keeps_its_pending_state() -> None:
    feed = Feed(HOLD)
    feed.series([1, 30, 30, 30])
    edited = HOLD.replace("above: 20", "above: 25").replace("hold: 5,", "hold: 6,")
    again = _restarted(feed, edited)
    assert again.series([30, 30, 30, 30], start=4) == [("open", "c1", 1, 7)]


def test_a_removed_rule_drops_its_state_and_counts_it() -> None:
    feed = Feed(HOLD)
    feed.series([1, 30, 30, 30])
    other = HOLD.replace("{id: r,", "{id: other,")
    again = _restarted(feed, other)
    assert again.engine.stats.dropped_tracks == 1
    assert again.series([30, 30, 30, 30, 30, 30], start=4) == [("open", "c1", 4, 9)]


def test_restore_from_the_stores_open_cases_when_the_snapshot_is_older() -> None:
    feed = Feed(HOLD)
    feed.series([1, 30, 30])
    old = snapshot(feed.engine)
    opened = feed.series([30, 30, 30, 30], start=3)
    assert opened == [("open", "c1", 1, 6)]
    (alert,) = feed.alerts
    again = Feed(HOLD)
    again.engine = restore(again.rules, old, clock=feed.engine.clock_policy)
    assert (
        again.engine.adopt_open([(alert.rule_id, alert.sensor_id, alert.started_at, ["c1"])]) == 1
    )
    assert again.series([30, 30, 30, 30], start=3) == []
    assert again.series([1, 1, 1, 1], start=7) == [("cleared", "c1", 1, 10)]


def test_adopted_case_of_a_sensor_not_seen_yet_clears_on_its_recovery() -> None:
    feed = Feed(HOLD)
    feed.series([30] * 7)
    (alert,) = feed.alerts
    fresh = Feed(HOLD)
    fresh.engine.adopt_open([(alert.rule_id, "c1", alert.started_at, ["c1"])])
    assert fresh.series([1, 1, 1, 1], start=10) == [("cleared", "c1", 0, 13)]


@pytest.mark.parametrize(
    ("data", "message"),
    [(b"{", "not JSON"), (b'{"version": 99}', "version 99"), (b'{"version": 1}', "damaged")],
)
def test_bad_snapshots_are_refused_with_why(data: bytes, message: str) -> None:
    with pytest.raises(SnapshotError, match=message):
        restore(Feed(HOLD).rules, data)
