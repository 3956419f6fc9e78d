"""``citysense serve`` as a real process for tests that kill it, and a paced edge that publishes
numbered batches so every batch can be accounted for."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Collection, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from center import Accounts, AccountStore, create_engine, migrate
from center.auth import AccountExistsError, Role
from citysense.broker import MosquittoBroker, free_port
from protocol import (
    Channel,
    Reading,
    SensorInfo,
    SensorKind,
    StationState,
    StationTopic,
    TelemetryBatch,
    encode,
)
from tests.factories import cover_info

QUICK_RULES = Path(__file__).parent / "data" / "quick_rules.yaml"


def serve_env(
    broker: MosquittoBroker, data: Path, *, victoria_url: str | None = None, **extra: str
) -> dict[str, str]:
    """The environment of a node on a free HTTP port with everything under ``data``."""
    port = free_port()
    env = {
        **os.environ,
        "CITYSENSE_INGEST_MQTT_PORT": str(broker.port),
        "CITYSENSE_INGEST_CLIENT_ID": f"ingest-{data.name}-{port}",
        "CITYSENSE_INGEST_DEAD_LETTER_PATH": str(data / "dead.jsonl"),
        "CITYSENSE_INGEST_RULES_PATH": str(QUICK_RULES),
        "CITYSENSE_INGEST_ALLOWED_LATENESS_S": "0.3",
        "CITYSENSE_INGEST_SNAPSHOT_PATH": str(data / "checkpoint.json"),
        "CITYSENSE_INGEST_SNAPSHOT_EVERY_S": "0.5",
        "CITYSENSE_SINK_RECORDER_DIR": str(data / "journal"),
        "CITYSENSE_CENTER_DATABASE_URL": f"sqlite+aiosqlite:///{data / 'cases.db'}",
        "CITYSENSE_CENTER_PORT": str(port),
        **extra,
    }
    if victoria_url is not None:
        env["CITYSENSE_SINK_VICTORIA_URL"] = victoria_url
        env["CITYSENSE_SINK_FLUSH_INTERVAL_S"] = "0.2"
    env["CITYSENSE_TOKEN"] = admin_token(env["CITYSENSE_CENTER_DATABASE_URL"])
    return env


def admin_token(database_url: str) -> str:
    """An admin's API token on the node's database (migrated first, as ``citysense users``
    does): ``api`` sends it, and so do CLI commands run with this environment."""

    async def issue() -> str:
        await migrate(database_url)
        engine = create_engine(database_url)
        try:
            accounts = Accounts(AccountStore(engine))
            with suppress(AccountExistsError):
                await accounts.add_user("test-admin", Role.ADMIN, None)
            token, _ = await accounts.issue_token("test-admin", "tests", Role.ADMIN)
            return token
        finally:
            await engine.dispose()

    with ThreadPoolExecutor(1) as aside:  # clear of any loop the test runs
        return aside.submit(asyncio.run, issue()).result()


@contextmanager
def serve(env: dict[str, str], *args: str) -> Iterator[subprocess.Popen[str]]:
    """``citysense serve [args]``; its output goes to ``serve.log`` beside its dead letters (a file,
    not a pipe: a pipe nobody reads fills up and blocks the node's logging mid-test)."""
    log = Path(env["CITYSENSE_INGEST_DEAD_LETTER_PATH"]).with_name("serve.log")
    with log.open("a") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "citysense.cli", "serve", *args],
            stdout=output,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGCONT)  # a test may have frozen it (SIGSTOP)
            process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:  # never leave it running for the next tests
            process.kill()
            process.wait()
            raise


def api(env: dict[str, str], path: str) -> Any:
    url = f"http://127.0.0.1:{env['CITYSENSE_CENTER_PORT']}{path}"
    request = urllib.request.Request(url, headers=auth_header(env))
    with urllib.request.urlopen(request, timeout=5) as response:
        if path == "/metrics":
            return response.read().decode()
        return json.load(response)


def auth_header(env: dict[str, str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {env['CITYSENSE_TOKEN']}"}


def metric(env: dict[str, str], name: str, **labels: str) -> float:
    """One sample from the node's ``/metrics`` (0 when absent)."""
    try:
        text = api(env, "/metrics")
    except OSError:
        return 0.0
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    pattern = re.escape(name) + (r"\{" + re.escape(wanted) + r"\}" if labels else "") + r" (\S+)"
    match = re.search(r"^" + pattern + r"$", text, re.MULTILINE)
    return float(match[1]) if match else 0.0


def wait_for_station(env: dict[str, str], station_id: str, within: float) -> None:
    """Until the node's registry lists ``station_id`` (its birth got through)."""
    wait_for(
        lambda: any(s["station_id"] == station_id for s in api(env, "/api/v1/stations")["items"]),
        within,
        f"the birth of {station_id} reached the registry",
    )


def wait_for(check: Callable[[], Any], within: float, what: str) -> Any:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            result = check()
        except OSError:
            result = None
        if result:
            return result
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {within}s")


class NumberedEdge:
    """One station publishing numbered batches of cover readings at QoS 1 (as its edge agent
    would), from a birth on. ``tilt`` of the first cover (or of the covers named) can be raised
    to open a case. ``sensors``: the birth's covers, instead of ``covers`` alike ones."""

    def __init__(
        self,
        broker: MosquittoBroker,
        station_id: str,
        covers: int = 5,
        *,
        realtime: bool = False,
        sensors: Sequence[SensorInfo] = (),
    ) -> None:
        self.realtime = realtime
        """Stamp batches with the wall clock (a live station) instead of 10 ms apart."""
        self.station_id = station_id
        infos = list(sensors) or [cover_info(f"{station_id}.cover-{i:02d}") for i in range(covers)]
        self.sensors = [info.sensor_id for info in infos]
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"edge-{station_id}")
        self.client.max_queued_messages_set(0)
        self.client.max_inflight_messages_set(1000)
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        self.seq = 0
        self.pending: list[mqtt.MQTTMessageInfo] = []
        self.t0 = datetime.now(UTC)
        birth = StationState(
            station_id=station_id,
            status="online",
            boot_epoch=1,
            ts=self.t0,
            sensors=infos,
        )
        topic = str(StationTopic(station_id, Channel.STATE))
        self.client.publish(topic, encode(birth), qos=1, retain=True).wait_for_publish(5)
        self.topic = str(StationTopic(station_id, Channel.TELEMETRY))

    def publish(self, tilt: float = 1.0, tilted: Collection[int] = (0,)) -> None:
        """One batch: a reading of every cover, ``tilt`` for the covers at the indices in
        ``tilted`` and 1° for the others, stamped 10 ms apart per batch (unique times).
        Published without waiting (as fast as a busy station's backlog); ``flush`` waits."""
        ts = datetime.now(UTC) if self.realtime else self.t0 + timedelta(milliseconds=10 * self.seq)
        readings = [
            Reading(
                sensor_id=sensor,
                kind=SensorKind.COVER,
                ts=ts,
                values={"tilt_deg": tilt if i in tilted else 1.0},
            )
            for i, sensor in enumerate(self.sensors)
        ]
        batch = TelemetryBatch(
            station_id=self.station_id, boot_epoch=1, seq=self.seq, sent_at=ts, readings=readings
        )
        self.seq += 1
        self.pending.append(self.client.publish(self.topic, encode(batch), qos=1))
        if len(self.pending) >= 20_000:  # packet ids are 16 bits: never that many outstanding
            self.flush()

    def flush(self) -> None:
        """Wait until the broker has every batch published so far (PUBACK)."""
        for info in self.pending:
            info.wait_for_publish(30)
        self.pending.clear()

    def close(self) -> None:
        self.flush()
        self.client.disconnect()  # the loop still runs: it sends DISCONNECT and closes the socket
        self.client.loop_stop()
