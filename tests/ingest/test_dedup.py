"""De-duplication by (station, boot, seq): compact and persistable."""

from __future__ import annotations

import json

from ingest.dedup import BOOTS_KEPT, Deduplicator


def test_a_new_boot_may_start_at_any_seq() -> None:
    dedup = Deduplicator(window=64)
    for seq in range(10):
        assert dedup.first_time("a", 1, seq)
    assert dedup.first_time("a", 2, 5000)  # seq counts on across boots
    assert dedup.first_time("a", 2, 4999)  # an alarm batch overtook it
    assert not dedup.first_time("a", 2, 5000)
    assert not dedup.first_time("a", 1, 9)  # the old boot is still checked


def test_a_jump_far_past_the_window_forgets_the_window_without_a_huge_shift() -> None:
    dedup = Deduplicator(window=64)
    assert dedup.first_time("a", 1, 5)
    assert dedup.first_time("a", 1, 2**62)
    assert not dedup.first_time("a", 1, 2**62)
    assert dedup.first_time("a", 1, 2**62 - 1)


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
    for boot in range(1, BOOTS_KEPT + 3):
        dedup.first_time("a", boot, 0)
    assert dedup.first_time("a", 1, 0)  # forgotten: the oldest boots go first
    assert not dedup.first_time("a", BOOTS_KEPT + 2, 0)


def test_a_crash_loop_of_several_boots_still_recognises_their_resent_batches() -> None:
    dedup = Deduplicator()
    seq = 0
    for boot in range(100, 112):  # twelve boots in quick succession, ten batches each
        for _ in range(10):
            assert dedup.first_time("a", boot, seq)
            seq += 1
    assert not any(dedup.first_time("a", 100 + s // 10, s) for s in range(seq))
