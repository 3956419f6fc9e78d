"""Sensor drivers for real devices, behind ``edge.driver.SensorDriver``.

- ``feed``: the JSON reading format of a gateway feed, decoded and checked against the contract.
- ``udp``: that feed received as UDP datagrams from a local radio gateway (NB-IoT, LoRa).

The simulated drivers live in ``simulator.fleet``.
"""

from edge.drivers.feed import FeedDecoder, FeedRejectReason, FeedStats, Rejected
from edge.drivers.udp import DriverError, UdpGatewayDriver, UdpSettings

__all__ = [
    "DriverError",
    "FeedDecoder",
    "FeedRejectReason",
    "FeedStats",
    "Rejected",
    "UdpGatewayDriver",
    "UdpSettings",
]
