"""The agent's decisions without I/O: which readings are urgent and in what order they leave."""

from __future__ import annotations

from datetime import timedelta

from edge.core import EdgeCore
from edge.outbox import MemoryOutbox, OutboxLimits
from rules import load_rules
from tests.factories import T0, tilt


def core() -> EdgeCore:
    outbox = MemoryOutbox(OutboxLimits(), boot_epoch=1, max_batch=100, window=8, clock=lambda: T0)
    return EdgeCore("st-1", outbox, load_rules())


def sample(edge: EdgeCore, seconds: float, *values: float) -> set[str]:
    readings = [tilt(seconds, v, f"st-1.cover-0{k + 1}") for k, v in enumerate(values)]
    alarm = edge.in_alarm(readings, T0 + timedelta(seconds=seconds))
    edge.put(readings, alarm)
    return alarm


def test_a_sensor_once_urgent_stays_urgent_until_the_outbox_drains() -> None:
    edge = core()
    assert sample(edge, 1, 1.0, 1.0) == set()
    assert sample(edge, 2, 30.0, 1.0) == {"st-1.cover-01"}  # pending: its hold runs
    assert sample(edge, 3, 2.0, 1.0) == {"st-1.cover-01"}  # back at rest, still urgent
    batches = edge.outbox.take()
    first = [r.sensor_id for r in batches[0].readings]
    assert first == ["st-1.cover-01", "st-1.cover-01"]  # the urgent readings, in order, first
    for sealed in batches:
        edge.outbox.ack(sealed.seq)
    edge.drained()
    assert sample(edge, 4, 2.0, 1.0) == set()


def test_an_open_incident_keeps_its_sensor_urgent_across_drains() -> None:
    edge = core()
    for second in range(30):
        sample(edge, second, 60.0, 1.0)  # open for 30 s: past the 20 s hold
    edge.drained()
    assert sample(edge, 31, 60.0, 1.0) == {"st-1.cover-01"}
    assert edge.stats.alarm_readings == 31
    assert edge.stats.readings_sampled == 62
