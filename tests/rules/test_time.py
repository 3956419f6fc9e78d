"""Event time: sparse reporting, gaps, silence, late and out-of-order data, wrong clocks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from rules import ClockPolicy, RuleEngine
from tests.factories import T0
from tests.rules.harness import Feed, at, rule, rules_yaml, short

HOLD_20 = rules_yaml(
    rule("when: {field: tilt_deg, above: 20}, hold: 20, stale_after: 13h"),
)


def test_a_cover_reporting_only_by_exception_stays_open_until_it_reports_recovery() -> None:
    feed = Feed(HOLD_20)
    # one alarm report, then only a neighbour's heartbeat moves the station's event time
    assert feed.send(at(0, 75, "c1")) == []
    assert feed.send(at(10, 1, "c2")) == []
    assert feed.send(at(25, 1, "c2")) == [("open", "c1", 0, 20)]
    assert feed.send(at(3600, 1, "c2")) == []
    assert feed.send(at(3700, 2, "c1")) == [("cleared", "c1", 0, 3700)]


def test_the_edge_clock_moves_event_time_when_no_sensor_reports() -> None:
    feed = Feed(HOLD_20)
    feed.send(at(0, 75, "c1"))
    engine = feed.engine
    assert short(engine.advance("st-1", T0 + timedelta(seconds=30))) == [("open", "c1", 0, 20)]


def test_a_sensor_silent_past_its_heartbeat_holds_nothing() -> None:
    text = rules_yaml(rule("when: {field: tilt_deg, above: 20}, hold: 60, stale_after: 10"))
    feed = Feed(text)
    feed.send(at(0, 30, "c1"))
    # neighbours report; c1 says nothing for 12 hours, then reports 30 again
    assert feed.each(at(t, 1, "c2") for t in range(5, 200, 5)) == []
    assert feed.send(at(12 * 3600, 30, "c1")) == []
    later = feed.each(at(12 * 3600 + t, 31, "c1") for t in range(5, 65, 5))
    assert later == [("open", "c1", 12 * 3600, 12 * 3600 + 60)]


def test_two_readings_hours_apart_do_not_count_as_held_for_hours() -> None:
    text = rules_yaml(
        rule("when: {field: tilt_deg, above: 20}, hold: 7200, stale_after: 60", kind="pole")
    )
    feed = Feed(text)
    assert feed.send(at(0, 30, "p1", kind="pole")) == []
    assert feed.send(at(12 * 3600, 30, "p1", kind="pole")) == []


def test_no_data_opens_after_the_period_and_clears_on_the_next_reading() -> None:
    text = rules_yaml(rule("no_data: 60"))
    feed = Feed(text)
    feed.send(at(0, 1, "c1"), at(0, 1, "c2"))
    out = feed.each(at(t, 1, "c2") for t in range(5, 120, 5))
    assert out == [("open", "c1", 0, 60)]
    assert feed.send(at(130, 1, "c1")) == [("cleared", "c1", 0, 130)]


def test_out_of_order_batches_within_the_allowed_lateness_are_put_back_in_order() -> None:
    values = [1, 30, 30, 30, 30, 1, 1, 1, 30, 30, 30, 1]
    readings = [at(i, v) for i, v in enumerate(values)]
    in_order = Feed(HOLD_20.replace("hold: 20", "hold: 2"), lateness=5)
    expected = in_order.each(readings) + short(in_order.engine.drain())
    swapped = Feed(HOLD_20.replace("hold: 20", "hold: 2"), lateness=5)
    got = []
    for i in range(0, len(readings), 4):  # batches of two readings, each pair sent swapped
        first, second = readings[i : i + 2], readings[i + 2 : i + 4]
        got += swapped.send(*second, sent=i + 3) if second else []
        got += swapped.send(*first, sent=i + 3)
    got += short(swapped.engine.drain())
    assert got == expected
    assert [a[0] for a in expected] == ["open", "cleared", "open", "cleared"]
    assert swapped.engine.stats.late_skipped == 0


def test_the_reorder_buffer_stays_sorted_whatever_order_batches_and_readings_come_in() -> None:
    feed = Feed(HOLD_20, lateness=60)
    feed.send(at(10, 1, "c1"), at(12, 1, "c2"), sent=12)
    feed.send(at(31, 1, "c1"), at(30, 1, "c2"), sent=31)  # unsorted within the batch
    feed.send(at(20, 1, "c1"), at(21, 1, "c2"), sent=31)  # overtaken by the one before
    feed.send(at(40, 1, "c1"), at(40, 1, "c2"), sent=40)  # equal times: arrival order
    buffer = feed.engine.stations["st-1"].buffer
    assert [(t - T0.timestamp(), sensor) for t, _, sensor, *_ in buffer] == [
        (10, "c1"), (12, "c2"), (20, "c1"), (21, "c2"),
        (30, "c2"), (31, "c1"), (40, "c1"), (40, "c2"),
    ]  # fmt: skip
    assert buffer == sorted(buffer)


def test_a_reading_later_than_the_lateness_is_counted_and_not_evaluated() -> None:
    feed = Feed(HOLD_20, lateness=2)
    feed.each(at(t, 1) for t in range(10))
    assert feed.send(at(3, 80), sent=11) == []
    assert feed.engine.stats.late_skipped == 1


def test_a_late_reading_of_another_sensor_is_still_evaluated_and_flagged() -> None:
    feed = Feed(rules_yaml(rule("when: {field: tilt_deg, above: 20}")), lateness=1)
    feed.each(at(t, 1, "c1") for t in range(10))
    (alert,) = feed.engine.process("st-1", [at(5, 80, "c2")], T0 + timedelta(seconds=11))
    assert alert.state == "open"
    assert "late" in alert.flags
    assert feed.engine.stats.late_evaluated == 1


def test_a_fast_device_clock_is_corrected_by_the_offset_the_batches_show() -> None:
    feed = Feed(HOLD_20.replace("hold: 20", "hold: 3"))
    skew = 420.0
    out = []
    for t in range(10):
        out += feed.send(at(t + skew, 1 if t < 2 else 60), sent=t)
    assert out == [("open", "c1", 2, 5)]
    assert feed.engine.stats.clock_skew_corrected == 10
    assert "clock_skew" in feed.alerts[0].flags


def test_a_slow_device_clock_is_corrected_too() -> None:
    feed = Feed(HOLD_20.replace("hold: 20", "hold: 3"))
    out = []
    for t in range(200, 210):
        out += feed.send(at(t - 600, 1 if t < 202 else 60), sent=t)
    assert out == [("open", "c1", 202, 205)]


def test_a_reset_clock_is_flagged_and_evaluated_at_arrival_time() -> None:
    feed = Feed(HOLD_20.replace("hold: 20", "hold: 3"))
    reset = datetime(2000, 1, 1, tzinfo=UTC)
    out = []
    for t in range(10):
        reading = at(t, 1 if t < 2 else 60).model_copy(update={"ts": reset + timedelta(seconds=t)})
        out += feed.send(reading, sent=t)
    assert out == [("open", "c1", 2, 5)]
    assert feed.engine.stats.clock_reset_flagged == 10
    assert "clock_reset" in feed.alerts[0].flags


def test_a_reading_stamped_before_the_stations_birth_is_a_reset_clock() -> None:
    feed = Feed(HOLD_20.replace("hold: 20", "hold: 3"))
    feed.engine.note_birth("st-1", T0 + timedelta(hours=1))
    feed.send(at(0, 1), sent=3600 + 120)
    assert feed.engine.stats.clock_reset_flagged == 1


def test_one_reading_stamped_2099_does_not_blind_the_sensor() -> None:
    feed = Feed(HOLD_20.replace("hold: 20", "hold: 3"))
    future = at(0, 1).model_copy(update={"ts": datetime(2099, 1, 1, tzinfo=UTC)})
    feed.send(future, sent=0)
    out = []
    for t in range(1, 10):
        out += feed.send(at(t, 60), sent=t)
    assert out == [("open", "c1", 1, 4)]


def test_same_batches_give_the_same_alerts_whatever_the_batching() -> None:
    values = [1, 30, 30, 30, 30, 30, 2, 2, 40, 40, 40, 40, 40, 1]
    readings = [at(i, v) for i, v in enumerate(values)]
    text = HOLD_20.replace("hold: 20", "hold: 2")
    one = Feed(text)
    whole = one.send(*readings) + short(one.engine.drain())
    chunked = Feed(text)
    parts = []
    for start in range(0, len(readings), 3):
        parts += chunked.send(*readings[start : start + 3])
    parts += short(chunked.engine.drain())
    assert parts == whole
    assert len(whole) == 4


def test_engine_reads_no_wall_clock() -> None:
    """Far-past event times work as well as present ones: nothing compares with 'now'."""
    engine = RuleEngine(Feed(HOLD_20).rules, clock=ClockPolicy(allowed_lateness=0))
    old = [
        at(t, 60).model_copy(update={"ts": datetime(1999, 1, 1, tzinfo=UTC) + timedelta(seconds=t)})
        for t in range(30)
    ]
    alerts = []
    for reading in old:
        alerts += engine.process("st-1", [reading], reading.ts)
    assert [a.state for a in alerts] == ["open"]


def test_a_reconnect_birth_does_not_make_the_backlog_a_reset_clock() -> None:
    feed = Feed(HOLD_20.replace("hold: 20", "hold: 3"))
    feed.engine.note_birth("st-1", T0)
    feed.engine.note_birth("st-1", T0 + timedelta(minutes=10))  # back after an outage
    out = feed.send(*(at(60 + t, 60) for t in range(10)), sent=600)
    assert out == [("open", "c1", 60, 63)]
    assert feed.engine.stats.clock_reset_flagged == 0
