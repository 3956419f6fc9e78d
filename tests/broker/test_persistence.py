"""Ingest is down, the broker queues its QoS 1 messages, the broker is killed with kill -9 and
restarted: every message the broker acknowledged is delivered to ingest, counted by message.

The broker writes its database at the end of a loop iteration, after it sent that iteration's
PUBACKs (docs/broker.md). So after the last acknowledgement the station sends one more message
and waits for its PUBACK: the broker reads it in a later iteration, after the save that holds
everything before it. Only that barrier may be lost; the counted messages may not.

The same run against a time-based autosave (the old production setting) loses them: the check
fails when the config is wrong.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from protocol import TOPIC_ROOT
from tests.broker.conftest import ProductionBroker, running_broker
from tests.broker.probe import ProbeError

pytestmark = pytest.mark.integration

MESSAGES = 300
INGEST = "citysense-ingest"
TELEMETRY = f"{TOPIC_ROOT}/stations/st-a/telemetry"
DURABLE = "autosave_on_changes true\nautosave_interval 1\n"


def _queue_then_crash(production: ProductionBroker) -> list[bytes]:
    """Queue MESSAGES for ingest's session, kill -9, restart; what ingest receives then."""
    ingest = production.probe(INGEST, client_id=INGEST, clean=False)
    ingest.subscribe(TELEMETRY)
    ingest.close()
    station = production.probe("st-a")
    for n in range(MESSAGES):
        station.publish(TELEMETRY, f"reading {n}".encode())
    station.publish(TELEMETRY, b"barrier")
    production.kill()
    production.start()

    ingest = production.probe(INGEST, client_id=INGEST, clean=False)
    if ingest.session_present:  # else the broker forgot the session and its queue
        with contextlib.suppress(ProbeError):  # counted by the caller
            ingest.until(lambda p: len(p.messages) >= MESSAGES, "the queued messages")
    return [payload for payload in ingest.payloads() if payload != b"barrier"]


def test_acknowledged_messages_survive_a_broker_kill(production: ProductionBroker) -> None:
    assert DURABLE in production.template
    delivered = _queue_then_crash(production)
    assert sorted(delivered) == sorted(f"reading {n}".encode() for n in range(MESSAGES))


def test_a_time_based_autosave_would_lose_them(pki: Path, tmp_path: Path) -> None:
    template = (Path(__file__).parents[2] / "broker_config" / "production.conf").read_text()
    assert DURABLE in template
    with running_broker(pki, tmp_path, template.replace(DURABLE, "autosave_interval 30\n")) as b:
        delivered = _queue_then_crash(b)
    assert len(delivered) < MESSAGES
