"""Shared fixtures: real services on free loopback ports.

In CI (``CI=true``) and everywhere else a missing service fails the test: it never skips.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from citysense.broker import MosquittoBroker


@pytest.fixture(scope="session")
def mosquitto() -> Iterator[MosquittoBroker]:
    """A private Mosquitto started from broker_config/dev.conf on a free loopback port."""
    with MosquittoBroker() as broker:
        yield broker
