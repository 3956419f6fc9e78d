"""Shared fixtures: real services on free loopback ports.

In CI (``CI=true``) and everywhere else a missing service fails the test: it never skips.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.publish as publish
import pytest

from citysense.broker import MosquittoBroker
from citysense.victoria import VictoriaError
from citysense.victoria import VictoriaMetrics as _VictoriaMetrics
from protocol import INGEST_STATE_TOPIC


@pytest.fixture(scope="session")
def mosquitto() -> Iterator[MosquittoBroker]:
    """A private Mosquitto started from broker_config/dev.conf on a free loopback port."""
    with MosquittoBroker() as broker:
        yield broker


@pytest.fixture(autouse=True)
def _no_ingest_presence(request: pytest.FixtureRequest) -> None:
    """Each test that uses the shared broker starts without an earlier node's retained presence
    (a node stopped cleanly leaves ``offline``, and agents would hold their data)."""
    if "mosquitto" in request.fixturenames:
        broker: MosquittoBroker = request.getfixturevalue("mosquitto")
        publish.single(
            INGEST_STATE_TOPIC, b"", qos=1, retain=True, hostname=broker.host, port=broker.port
        )


class VictoriaMetrics(_VictoriaMetrics):
    """The package's launcher; a VictoriaMetrics that cannot start fails the test (never skips)."""

    def start(self, timeout: float = 15.0) -> VictoriaMetrics:
        try:
            super().start(timeout)
        except VictoriaError as exc:
            pytest.fail(str(exc))
        return self


@pytest.fixture(scope="session")
def victoria() -> Iterator[VictoriaMetrics]:
    """A private VictoriaMetrics on a free loopback port with a temporary data dir."""
    with tempfile.TemporaryDirectory(prefix="citysense-victoria-") as workdir:
        server = VictoriaMetrics(Path(workdir)).start()
        try:
            yield server
        finally:
            server.stop()
