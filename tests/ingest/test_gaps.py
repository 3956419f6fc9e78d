"""The gap tracker: missing batches per station across boots, asked for, filled or given up."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime, timedelta

import pytest

from ingest.gaps import GapPolicy, GapTracker
from protocol import CommandAck, GapReport, ResendRequest
from tests.factories import T0


def at(seconds: float) -> datetime:
    """The fake clock: ``seconds`` after T0."""
    return T0 + timedelta(seconds=seconds)


def feed(
    tracker: GapTracker, seqs: Iterable[int], boot: int = 1, station: str = "a", t: float = 0
) -> None:
    for seq in seqs:
        tracker.saw(station, boot, seq, at(t))


def gap_report(
    first: int | None,
    last: int | None,
    *,
    readings: int = 10,
    marker: int = 1,
    boot: int = 1,
    reason: str = "bytes",
) -> GapReport:
    return GapReport.model_validate(
        {
            "station_id": "a",
            "boot_epoch": boot,
            "marker_id": marker,
            "reason": reason,
            "readings": readings,
            "batches": 0 if first is None or last is None else last - first + 1,
            "first_seq": first,
            "last_seq": last,
            "sent_at": T0,
        }
    )


def ack(request: ResendRequest, **outcomes: int) -> CommandAck:
    counts = {"resent": 0, "pending": 0, "expired": 0, "unknown": 0, **outcomes}
    return CommandAck(
        station_id=request.station_id,
        request_id=request.request_id,
        command="resend",
        sent_at=T0,
        **counts,
    )


def spans(requests: list[ResendRequest]) -> list[tuple[str, int, int]]:
    return [(r.station_id, r.first_seq, r.last_seq) for r in requests]


def test_in_order_batches_leave_no_gap() -> None:
    tracker = GapTracker()
    feed(tracker, range(1000))
    assert tracker.open_batches() == 0
    assert tracker.due(T0 + timedelta(hours=1)) == []


def test_out_of_order_batches_open_a_gap_and_fill_it_without_a_request() -> None:
    tracker = GapTracker()
    feed(tracker, [0, 1, 5, 3, 7])
    assert tracker.open_ranges("a") == [(2, 2), (4, 4), (6, 6)]
    assert tracker.open_by_station() == {"a": 3}
    feed(tracker, [2, 6, 4])
    assert tracker.open_batches() == 0
    assert tracker.counts.filled == 0  # none was asked for


def test_a_fill_in_the_middle_splits_the_range() -> None:
    tracker = GapTracker()
    feed(tracker, [0, 10, 5])
    assert tracker.open_ranges("a") == [(1, 4), (6, 9)]


def test_the_first_batch_of_a_station_or_a_boot_opens_no_gap_below_it() -> None:
    tracker = GapTracker()
    feed(tracker, [5000, 5001])
    assert tracker.open_batches() == 0
    feed(tracker, [5002], boot=2)  # seq counts on across boots
    feed(tracker, [5003], boot=3)
    assert tracker.open_batches() == 0
    assert tracker.counts.resets == {"store_reset": 0, "jump": 0}


def test_gaps_are_tracked_across_boots_and_filled_by_batches_of_the_older_boot() -> None:
    tracker = GapTracker()
    feed(tracker, range(10), boot=1)
    feed(tracker, [15, 16], boot=2)  # 10..14 sealed in boot 1, not arrived yet
    assert tracker.open_ranges("a") == [(10, 14)]
    feed(tracker, range(10, 15), boot=1)  # re-sent after the restart, with their own boot
    assert tracker.open_batches() == 0
    feed(tracker, [17], boot=1)  # an older boot's batch above the mark (out of order)
    assert tracker.open_batches() == 0


def test_a_new_boot_below_the_mark_means_the_store_was_lost_and_resets_the_station() -> None:
    tracker = GapTracker()
    feed(tracker, [0, 1, 2, 500], boot=1)
    assert tracker.open_batches() == 497
    feed(tracker, [0], boot=2)  # numbering started again
    assert tracker.open_batches() == 0
    assert tracker.counts.resets["store_reset"] == 1
    assert tracker.counts.unrecoverable["store_reset"] == 497
    feed(tracker, [1, 2], boot=2)
    feed(tracker, [300, 301], boot=1)  # late batches of the old numbering: not tracked
    assert tracker.open_batches() == 0
    feed(tracker, [5], boot=2)
    assert tracker.open_ranges("a") == [(3, 4)]


def test_a_gap_report_closes_the_batches_it_names_and_counts_readings_once() -> None:
    tracker = GapTracker()
    feed(tracker, [0, 20])
    report = gap_report(5, 9, readings=250, reason="age")
    assert tracker.report(report, T0)
    assert not tracker.report(report, T0)  # announced again until the broker acknowledged it
    assert tracker.open_ranges("a") == [(1, 4), (10, 19)]
    assert tracker.counts.lost_readings["age"] == 250
    assert tracker.lost_readings("a") == 250
    assert tracker.counts.reported_lost == 5
    assert tracker.counts.reports == {"new": 1, "repeat": 1}
    # the same marker id in another boot is another loss
    assert tracker.report(gap_report(None, None, readings=3, boot=2), T0)
    assert tracker.lost_readings("a") == 253


def test_a_gap_report_ahead_of_the_mark_is_no_gap_and_what_lies_between_is() -> None:
    tracker = GapTracker()
    feed(tracker, range(10))
    tracker.report(gap_report(10, 14), T0)  # evicted before they were ever sent
    feed(tracker, [15])
    assert tracker.open_batches() == 0
    tracker.report(gap_report(20, 24, marker=2), T0)
    assert tracker.open_ranges("a") == [(16, 19)]
    feed(tracker, [25])
    assert tracker.open_ranges("a") == [(16, 19)]


def test_ranges_are_bounded_and_the_oldest_are_counted_unrecoverable() -> None:
    tracker = GapTracker(GapPolicy(max_ranges=3))
    feed(tracker, range(0, 12, 2))  # 1, 3, 5, 7, 9 missing
    assert tracker.open_ranges("a") == [(5, 5), (7, 7), (9, 9)]
    assert tracker.counts.unrecoverable["bounded"] == 2
    feed(tracker, [7])  # still filled normally


def test_missing_seqs_are_bounded_and_a_far_jump_opens_no_gap() -> None:
    tracker = GapTracker(GapPolicy(max_missing=10))
    feed(tracker, [0, 8, 15])  # 1..7 and 9..14: 13 missing, the 3 oldest go
    assert tracker.open_ranges("a") == [(4, 7), (9, 14)]
    assert tracker.counts.unrecoverable["bounded"] == 3
    feed(tracker, [2**63])  # renumbered, or nonsense: nothing to ask for
    assert tracker.open_ranges("a") == [(4, 7), (9, 14)]
    assert tracker.counts.resets["jump"] == 1


def test_a_missing_range_is_asked_for_after_resend_after_then_with_backoff_then_given_up() -> None:
    tracker = GapTracker(GapPolicy(resend_after_s=10, attempts=3))
    feed(tracker, [0, 1, 4], t=0)  # 2..3 noticed at 0 s
    feed(tracker, [7], t=5)  # 5..6 noticed at 5 s
    assert tracker.due(at(9.9)) == []
    assert spans(tracker.due(at(10))) == [("a", 2, 3)]  # contiguous seqs in one request
    assert spans(tracker.due(at(15))) == [("a", 5, 6)]
    assert tracker.due(at(29.9)) == []
    assert spans(tracker.due(at(30))) == [("a", 2, 3)]  # 20 s after the first request
    assert spans(tracker.due(at(35))) == [("a", 5, 6)]
    assert tracker.due(at(69.9)) == []
    assert spans(tracker.due(at(70))) == [("a", 2, 3)]  # 40 s after the second
    assert spans(tracker.due(at(75))) == [("a", 5, 6)]
    assert tracker.counts.requests == 6
    assert tracker.due(at(149.9)) == []
    assert tracker.due(at(150)) == []  # 80 s after the third (the last): 2..3 given up
    assert (tracker.open_ranges("a"), tracker.counts.unrecoverable["retries"]) == ([(5, 6)], 2)
    assert tracker.due(at(155)) == []
    assert (tracker.open_batches(), tracker.counts.unrecoverable["retries"]) == (0, 4)
    assert tracker.counts.requests == 6


def test_requests_are_cut_at_max_resend_batches() -> None:
    tracker = GapTracker()
    feed(tracker, [0, 25_001])
    requests = tracker.due(at(10))
    assert spans(requests) == [("a", 1, 10_000), ("a", 10_001, 20_000), ("a", 20_001, 25_000)]
    assert len({r.request_id for r in requests}) == 3


def test_batches_arriving_after_a_request_count_as_filled() -> None:
    tracker = GapTracker()
    feed(tracker, [0, 5])
    tracker.due(at(10))
    feed(tracker, [1, 2, 3], t=11)
    assert tracker.counts.filled == 3
    assert tracker.open_ranges("a") == [(4, 4)]


def test_an_answer_counts_outcomes_and_closes_the_seqs_never_sealed() -> None:
    tracker = GapTracker()
    feed(tracker, [0, 10])
    (request,) = tracker.due(at(10))
    tracker.answer(ack(request, resent=5, expired=1, unknown=3), T0)
    assert tracker.open_ranges("a") == [(1, 6)]  # 7..9: the top of the range, never sealed
    assert tracker.counts.unrecoverable["unknown"] == 3
    assert tracker.counts.answers == {
        "resent": 5,
        "pending": 0,
        "expired": 1,
        "unknown": 3,
        "stale": 0,
    }
    tracker.answer(ack(request, resent=5, expired=1, unknown=3), T0)  # delivered twice
    assert tracker.counts.answers["resent"] == 5
    assert tracker.counts.answers["stale"] == 9


def test_request_ids_do_not_repeat_after_a_restart_from_an_older_checkpoint() -> None:
    tracker = GapTracker()
    feed(tracker, [0, 2])
    saved = tracker.to_dict()
    (before,) = tracker.due(at(10))
    again = GapTracker.from_dict(saved)
    (after,) = again.due(at(11))
    assert after.request_id != before.request_id


def test_state_round_trips_through_json_as_ranges() -> None:
    policy = GapPolicy(resend_after_s=10, attempts=2)
    tracker = GapTracker(policy)
    feed(tracker, [0, 50_000, 50_002], boot=3)
    feed(tracker, [7], boot=1, station="b")
    tracker.report(gap_report(100, 120, readings=42), T0)
    tracker.due(at(10))
    data = json.dumps(tracker.to_dict())
    assert len(data) < 2_000  # 50,000 missing seqs: two ranges, not 50,000 numbers
    again = GapTracker.from_dict(json.loads(data), policy)
    assert again.to_dict() == tracker.to_dict()
    assert again.open_ranges("a") == [(1, 49_999), (50_001, 50_001)]
    assert again.lost_readings("a") == 42
    assert not again.report(gap_report(100, 120, readings=42), T0)  # still known
    assert again.due(at(29)) == []  # the backoff goes on where it was
    assert len(again.due(at(30))) == 6
    feed(again, [1], boot=3, t=31)
    assert again.counts.filled == 1


@pytest.mark.parametrize(
    "policy",
    [{"resend_after_s": 0}, {"attempts": 0}, {"max_ranges": 0}, {"max_missing": 0}],
)
def test_a_policy_that_cannot_work_is_refused(policy: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=r"must be positive|invalid gap policy"):
        GapPolicy(**policy)  # type: ignore[arg-type]
