"""An in-process MQTT broker (amqtt) for `citysense demo` on a machine without Mosquitto."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from amqtt.broker import Broker


@asynccontextmanager
async def embedded_broker(host: str, port: int) -> AsyncIterator[None]:
    broker = Broker(
        {
            "listeners": {"default": {"type": "tcp", "bind": f"{host}:{port}"}},
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}
            },
        }
    )
    await broker.start()
    try:
        yield
    finally:
        await broker.shutdown()
