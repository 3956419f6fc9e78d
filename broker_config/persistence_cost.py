"""Measure what durable Mosquitto persistence costs (docs/broker.md quotes the figures).

    .venv/bin/python broker_config/persistence_cost.py rates [--messages 20000] [--publishers 8]
    .venv/bin/python broker_config/persistence_cost.py save --queued 180000
    .venv/bin/python broker_config/persistence_cost.py catch-up --backlog 20000 [--rate 1000]

``rates``: for each persistence mode, QoS 1 publishes acknowledged per second (overall and per
quarter of the run, as ingest's queue grows) with ingest's persistent session away, then online.
``save``: how long one save of the in-memory database takes with that many messages queued
(SIGUSR1; with autosave_on_changes every loop iteration that queued something pays this).
``catch-up``: ingest returns to a backlog while stations keep publishing at ``--rate``.
Each run starts a private Mosquitto on a loopback port; its database goes under ``--dir``
(default: a temp dir), so fsync costs what it costs on that disk. Payloads are 1,400 B: the
batch of a station with 7 sensors.
"""

from __future__ import annotations

import argparse
import getpass
import itertools
import signal
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from citysense.broker import MosquittoBroker

MODES = {
    "off": "persistence false\n",
    "every 30 s": "persistence true\nautosave_interval 30\n",
    "every change": "persistence true\nautosave_on_changes true\nautosave_interval 1\n",
}
BASE = """allow_anonymous true
max_queued_messages 0
max_queued_bytes 0
max_inflight_messages 100
log_dest stderr
log_type error
"""
# Run as root, Mosquitto switches to the user ``mosquitto``, which cannot write our temp dir.
USER = f"user {getpass.getuser()}\n"
SIZE = 1400


def _broker(mode: str, root: Path) -> MosquittoBroker:
    data = Path(tempfile.mkdtemp(prefix="persist-", dir=root))
    conf = data / "mosquitto.conf"
    conf.write_text(f"{BASE}{USER}{MODES[mode]}persistence_location {data}/\n")
    return MosquittoBroker(config=conf)


def _connect(port: int, client_id: str, *, clean: bool = True) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean)
    client.max_inflight_messages_set(100)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


def _close(*clients: mqtt.Client) -> None:
    for client in clients:
        client.disconnect()
        client.loop_stop()


def _register_session(port: int) -> None:
    """Ingest's persistent session, subscribed, then away: the broker queues for it."""
    client = _connect(port, "ingest", clean=False)
    client.subscribe("bench/#", qos=1)
    time.sleep(0.3)
    _close(client)


def _publish(port: int, messages: int, publishers: int) -> tuple[float, list[float]]:
    """Publish as fast as PUBACKs come; msg/s overall and per quarter of the run."""
    stamps: list[float] = []
    lock = threading.Lock()

    def on_publish(*_: object) -> None:
        with lock:
            stamps.append(time.perf_counter())

    clients = [_connect(port, f"pub-{i}") for i in range(publishers)]
    for client in clients:
        client.on_publish = on_publish
    start = time.perf_counter()
    infos = [
        clients[i % publishers].publish(f"bench/{i % publishers}", b"x" * SIZE, qos=1)
        for i in range(messages)
    ]
    for info in infos:
        info.wait_for_publish(timeout=600)
    elapsed = time.perf_counter() - start
    _close(*clients)
    stamps.sort()
    quarter = messages // 4
    edges = [start] + [stamps[min(len(stamps) - 1, quarter * q - 1)] for q in range(1, 5)]
    rates = [quarter / max(b - a, 1e-9) for a, b in itertools.pairwise(edges)]
    return messages / elapsed, rates


def rates(args: argparse.Namespace, root: Path) -> None:
    print(f"{args.messages} QoS 1 publishes of {SIZE} B from {args.publishers} clients")
    print(f"{'mode':<14}{'ingest':<8}{'msg/s':>9}   per quarter of the run   db at end")
    for online in (False, True):
        for mode in MODES:
            with _broker(mode, root) as broker:
                _register_session(broker.port)
                ingest = _connect(broker.port, "ingest", clean=False) if online else None
                rate, quarters = _publish(broker.port, args.messages, args.publishers)
                if ingest is not None:
                    _close(ingest)
                db = Path(broker.config).parent / "mosquitto.db"
                size = db.stat().st_size if db.exists() else 0
            q = " ".join(f"{r:7.0f}" for r in quarters)
            print(f"{mode:<14}{'online' if online else 'away':<8}{rate:9.0f}   {q}   {size:>9} B")


def save(args: argparse.Namespace, root: Path) -> None:
    with _broker("every 30 s", root) as broker:  # no save while we fill the queue
        _register_session(broker.port)
        _publish(broker.port, args.queued, 16)
        db = Path(broker.config).parent / "mosquitto.db"
        for _ in range(2):
            before = db.stat().st_ino if db.exists() else 0
            start = time.perf_counter()
            broker.signal(signal.SIGUSR1)
            while not db.exists() or db.stat().st_ino == before:
                time.sleep(0.002)
            took = time.perf_counter() - start
            print(f"{args.queued} queued, {db.stat().st_size / 1e6:.0f} MB database: {took:.3f} s")


class _Counter:
    def __init__(self) -> None:
        self.n = 0

    def count(self, *_: object) -> None:
        self.n += 1


def catch_up(args: argparse.Namespace, root: Path) -> None:
    publishers, seconds = 50, args.seconds
    for mode in ("every 30 s", "every change"):
        with _broker(mode, root) as broker:
            _register_session(broker.port)
            _publish(broker.port, args.backlog, 16)
            clients = [_connect(broker.port, f"station-{i}") for i in range(publishers)]
            received = _Counter()
            ingest = _connect(broker.port, "ingest", clean=False)
            ingest.on_message = received.count
            sent, start = 0, time.perf_counter()
            due = start
            while time.perf_counter() - start < seconds:
                for client in clients:
                    client.publish("bench/live", b"x" * SIZE, qos=1)
                    sent += 1
                due += publishers / args.rate
                time.sleep(max(0.0, due - time.perf_counter()))
            left = args.backlog + sent - received.n
            _close(ingest, *clients)
        print(
            f"{mode:<14} backlog {args.backlog}, {args.rate}/s arriving for {seconds:.0f} s: "
            f"ingest received {received.n}, {left} still queued"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--dir", type=Path, default=None, help="where persistence files go")
    commands = parser.add_subparsers(dest="command", required=True)
    one = commands.add_parser("rates")
    one.add_argument("--messages", type=int, default=20_000)
    one.add_argument("--publishers", type=int, default=8)
    two = commands.add_parser("save")
    two.add_argument("--queued", type=int, default=180_000)
    three = commands.add_parser("catch-up")
    three.add_argument("--backlog", type=int, default=20_000)
    three.add_argument("--rate", type=int, default=1000, help="messages/s from 50 stations")
    three.add_argument("--seconds", type=float, default=8.0)
    args = parser.parse_args()
    run = {"rates": rates, "save": save, "catch-up": catch_up}[args.command]
    with tempfile.TemporaryDirectory(prefix="citysense-persist-", dir=args.dir) as root:
        run(args, Path(root))


if __name__ == "__main__":
    main()
