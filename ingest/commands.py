"""Commands to stations through ingest's own MQTT session (a ``CommandPublisher``).

The session keeps a QoS 1 command until the broker acknowledges it: one published while the
connection is down goes out after the reconnect.
"""

from __future__ import annotations

from ingest.session import MqttSession
from protocol import Channel, ResendRequest, StationTopic, encode


class SessionCommands:
    def __init__(self, session: MqttSession) -> None:
        self.session = session

    async def send_command(self, request: ResendRequest) -> None:
        topic = str(StationTopic(request.station_id, Channel.COMMAND))
        self.session.publish(topic, encode(request), confirm=False)
