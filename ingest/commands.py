"""Commands to stations through ingest's own paho client (a ``CommandPublisher``).

``paho``'s ``publish`` is safe to call from the event loop while its network thread runs: it
queues the packet under paho's locks and wakes that thread, without blocking. At QoS 1 paho keeps
the message while the session is down and sends it after the reconnect.
"""

from __future__ import annotations

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

from protocol import Channel, ResendRequest, StationTopic, encode

_QUEUED = (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN)
"""``NO_CONN``: not connected now; paho sends it after the reconnect."""


class PahoCommands:
    def __init__(self, client: mqtt.Client) -> None:
        self.client = client

    async def send_command(self, request: ResendRequest) -> None:
        topic = str(StationTopic(request.station_id, Channel.COMMAND))
        info = self.client.publish(topic, encode(request), qos=1)
        if info.rc not in _QUEUED:
            raise ConnectionError(f"command to {request.station_id} not queued: {info.rc}")
