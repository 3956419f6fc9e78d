"""De-duplication by (station, boot, seq): compact, persistable, counting gaps."""

from __future__ import annotations

import json

from ingest.dedup import Deduplicator


def test_gaps_are_counted_and_filled_by_resent_batches() -> None:
    dedup = Deduplicator(window=64)
    for seq in (0, 1, 2, 5, 6, 9):
        assert dedup.first_time("a", 1, seq)
    assert dedup.gaps() == {"a": 4}  # 3, 4, 7, 8
    assert dedup.first_time("a", 1, 3)
    assert dedup.first_time("a", 1, 7)
    assert dedup.gaps() == {"a": 2}
    assert not dedup.first_time("a", 1, 7)
    assert dedup.gaps() == {"a": 2}


def test_the_first_batch_of_a_boot_seen_mid_stream_is_no_gap() -> None:
    dedup = Deduplicator()
    assert dedup.first_time("a", 7, 5000)
    assert dedup.gaps() == {}


def test_state_round_trips_through_json_and_stays_small() -> None:
    dedup = Deduplicator(window=4096)
    for seq in range(100_000):
        dedup.first_time("a", 1, seq)
    dedup.first_time("b", 3, 0)
    data = json.dumps(dedup.to_dict())
    assert len(data) < 2_000  # 100,000 batches of one station: about a kilobyte
    again = Deduplicator.from_dict(json.loads(data))
    assert not again.first_time("a", 1, 99_999)
    assert not again.first_time("a", 1, 96_000)
    assert again.first_time("a", 1, 100_000)
    assert not again.first_time("b", 3, 0)
    assert again.to_dict()["stations"]["b"] == dedup.to_dict()["stations"]["b"]


def test_only_the_newest_boots_are_kept() -> None:
    dedup = Deduplicator()
    for boot in range(1, 7):
        dedup.first_time("a", boot, 0)
    assert dedup.first_time("a", 1, 0)  # forgotten: the oldest boots go first
    assert not dedup.first_time("a", 6, 0)
