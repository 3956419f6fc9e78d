"""Delivery of case events to other systems, from the ``case_events`` table (the outbox):
webhooks (``webhooks``, signed by ``signing``) and the MQTT topic (``mqtt``), each a channel of
its own ``Relay`` with a cursor persisted in the case store (``cursors``). docs/cases.md says
what each promises and which test breaks it.
"""

from center.delivery.cursors import CursorStore
from center.delivery.mqtt import ConfirmedPublisher, MqttCaseEvents
from center.delivery.relay import (
    Channel,
    DeliveryError,
    RefusedDeliveryError,
    Relay,
    RelayStatus,
    RetryPolicy,
    TransientDeliveryError,
)
from center.delivery.settings import DeliverySettings, WebhookSubscriber
from center.delivery.webhooks import WebhookChannel

__all__ = [
    "Channel",
    "ConfirmedPublisher",
    "CursorStore",
    "DeliveryError",
    "DeliverySettings",
    "MqttCaseEvents",
    "RefusedDeliveryError",
    "Relay",
    "RelayStatus",
    "RetryPolicy",
    "TransientDeliveryError",
    "WebhookChannel",
    "WebhookSubscriber",
]
