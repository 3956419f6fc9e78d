"""The latency stage breakdown's arithmetic (the measurement itself needs the whole stack)."""

from __future__ import annotations

import pytest

from bench.latency_stages import _sensor_of, stages


def test_incident_topics_name_their_cover_and_others_nothing() -> None:
    assert _sensor_of("citysense/v1/stations/inc-ab12-00003/telemetry") == "inc-ab12-00003.cover-01"
    assert _sensor_of("citysense/v1/stations/lat-0001/telemetry") is None
    assert _sensor_of("short/topic") is None


def test_each_stage_is_the_time_from_the_one_before_and_unseen_incidents_are_left_out() -> None:
    published = {"a": 10.0, "b": 20.0}
    opened = {"a": 10.100}
    stamps = {"a": {"arrived": 10.010, "handled": 10.030, "stored": 10.090}, "b": {}}
    spans = stages(published, opened, stamps)
    assert spans["pub→arrived"] == [pytest.approx(10.0)]
    assert spans["arrived→handled"] == [pytest.approx(20.0)]
    assert "handled→alert" not in spans  # no alert stamp: not guessed
    assert spans["total"] == [pytest.approx(100.0)]
