"""Do-nothing paho-mqtt subscriber: counts messages on a topic filter and exits after N.

usage: python side_by_side_paho.py HOST PORT TOPIC_FILTER QOS N [STALL_S]

Prints ``ready`` once the broker acknowledged the subscription, then one JSON line at the end:
{"got": .., "first": epoch s, "last": epoch s, "bytes": ..}. No parsing, no work per message;
paho's network loop runs in this (main) thread. Exits early (got < N) after STALL_S seconds
without a message once the first one arrived, or 2*STALL_S before the first.
"""

from __future__ import annotations

import json
import sys
import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

host, port, topic, qos, n = (
    sys.argv[1],
    int(sys.argv[2]),
    sys.argv[3],
    int(sys.argv[4]),
    int(sys.argv[5]),
)
stall_s = float(sys.argv[6]) if len(sys.argv) > 6 else 30.0
state = {"got": 0, "first": 0.0, "last": 0.0, "bytes": 0}


def on_connect(client, _u, _f, code, _p):
    if code.is_failure:
        sys.exit(f"connect failed: {code}")
    client.subscribe(topic, qos)


def on_subscribe(_c, _u, _mid, _codes, _p):
    print("ready", flush=True)


def on_message(client, _u, message):
    now = time.time()
    if not state["got"]:
        state["first"] = now
    state["got"] += 1
    state["bytes"] += len(message.payload)
    state["last"] = now


client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="paho-count", protocol=mqtt.MQTTv311)
client.on_connect, client.on_subscribe, client.on_message = on_connect, on_subscribe, on_message
client.connect(host, port, keepalive=60)
started = time.time()
while state["got"] < n:
    client.loop(timeout=0.5)
    now = time.time()
    if state["got"] and now - state["last"] > stall_s:
        break
    if not state["got"] and now - started > 2 * stall_s:
        break
client.disconnect()
print(json.dumps(state), flush=True)
