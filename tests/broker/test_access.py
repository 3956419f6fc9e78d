"""broker_config/production.conf + citysense.acl: who may connect, publish and read what.

Each negative check ends with a positive marker sent after the forbidden attempt on the same
connection: the broker handles one client's packets in order, so once the marker arrived,
anything the broker had let through would have arrived before it.
"""

from __future__ import annotations

import itertools
import shutil
import signal
from pathlib import Path

import pytest

from citysense.provision import provision, station_account
from protocol import CASE_EVENTS_TOPIC, TOPIC_ROOT
from tests.broker.conftest import ProductionBroker, running_broker
from tests.broker.probe import Probe

pytestmark = pytest.mark.integration

NOT_AUTHORIZED_V5 = 135
"""PUBACK/CONNACK reason code 0x87 in MQTT 5."""
INGEST = "citysense-ingest"
CENTER = "citysense-center"


def topic(station: str, channel: str) -> str:
    return f"{TOPIC_ROOT}/stations/{station}/{channel}"


def refused(probe: Probe) -> bool:
    code = probe.connect(expect_ok=False)
    return code is None or code.is_failure


FROM_STATIONS = ("telemetry", "state", "gaps", "ack")
TO_STATIONS = ("cmd", "config")


def ingest_listening(production: ProductionBroker, **options: object) -> Probe:
    ingest = production.probe(INGEST, **options)
    ingest.subscribe(*(topic("+", channel) for channel in FROM_STATIONS))
    return ingest


def test_anonymous_and_wrong_passwords_are_refused_on_both_listeners(
    production: ProductionBroker,
) -> None:
    assert refused(production.probe(None, tls=False, connect=False))  # loopback, anonymous
    assert refused(production.probe(None, tls=True, connect=False))  # our client certificate
    wrong = production.auth("st-a", tls=True, secret="not-the-password")
    assert refused(production.probe("st-a", auth=wrong, connect=False))
    wrong = production.auth(INGEST, tls=False, secret="not-the-password")
    assert refused(production.probe(INGEST, auth=wrong, connect=False))
    # and the real ones get in on both listeners
    assert production.probe("st-a").connack == 0
    assert production.probe(INGEST).connack == 0


@pytest.mark.parametrize("v5", [False, True], ids=["mqtt311", "mqtt5"])
def test_a_station_publishes_only_under_its_own_id(production: ProductionBroker, v5: bool) -> None:
    ingest = ingest_listening(production)
    station = production.probe("st-a", v5=v5)
    target = production.probe("st-b")  # would receive forged commands or config
    target.subscribe(*(topic("st-b", channel) for channel in TO_STATIONS))
    forged = [
        station.publish(topic("st-b", channel), f"forged {channel}".encode(), retain=True)
        for channel in FROM_STATIONS + TO_STATIONS
    ]
    forged += [
        station.publish(topic("st-a", channel), f"own {channel}".encode(), retain=True)
        for channel in TO_STATIONS  # the center's topics, even its own
    ]
    forged.append(station.publish(f"{TOPIC_ROOT}/elsewhere", b"forged elsewhere"))
    if v5:  # MQTT 3.1.1 has no code for it: the broker acknowledges and drops
        assert {code.value for code in forged} == {NOT_AUTHORIZED_V5}
    for channel in FROM_STATIONS:
        retain = channel == "state"
        station.publish(topic("st-a", channel), f"own {channel}".encode(), retain=retain)

    ingest.until(lambda p: len(p.messages) >= len(FROM_STATIONS), "the station's own messages")
    assert sorted(ingest.payloads()) == sorted(f"own {c}".encode() for c in FROM_STATIONS)
    target.publish(topic("st-b", "telemetry"), b"marker")
    ingest.until(lambda p: b"marker" in p.payloads(), "st-b's marker")
    assert target.messages == []
    center = production.probe(CENTER)
    center.subscribe(topic("st-b", "state"), topic("st-a", "state"))
    center.until(lambda p: len(p.messages) >= 1, "st-a's retained state")
    assert center.payloads() == [b"own state"]  # no retained forgery for st-b


def test_a_station_reads_only_its_own_config_and_commands(production: ProductionBroker) -> None:
    station = production.probe("st-a")
    # Mosquitto 2.0 grants any subscription and applies the read ACL to each message it
    # would deliver: what counts is what arrives.
    station.subscribe(
        topic("st-b", "cmd"),
        topic("st-b", "config"),
        topic("+", "cmd"),
        topic("+", "telemetry"),
        f"{TOPIC_ROOT}/#",
        "#",
    )
    station.subscribe(topic("st-a", "cmd"), topic("st-a", "config"))

    center = production.probe(CENTER)
    ingest = production.probe(INGEST)
    center.publish(topic("st-b", "config"), b"config for st-b", retain=True)
    center.publish(topic("st-b", "cmd"), b"command for st-b")
    ingest.publish(topic("st-b", "cmd"), b"re-send request for st-b")
    st_b = production.probe("st-b")
    for channel in FROM_STATIONS:
        st_b.publish(topic("st-b", channel), f"st-b {channel}".encode())
    center.publish(topic("st-a", "config"), b"config for st-a", retain=True)
    center.publish(topic("st-a", "cmd"), b"command for st-a")
    ingest.publish(topic("st-a", "cmd"), b"re-send request for st-a")
    station.until(lambda p: len(p.messages) >= 3, "st-a's commands and config")
    assert sorted(station.payloads()) == [
        b"command for st-a",
        b"config for st-a",
        b"re-send request for st-a",
    ]


def test_the_center_reads_back_config_and_the_stations_answers(
    production: ProductionBroker,
) -> None:
    center = production.probe(CENTER)
    center.publish(topic("st-a", "config"), b"desired config", retain=True)
    center.subscribe(topic("+", "config"), topic("+", "ack"), topic("+", "state"))
    station = production.probe("st-a")
    station.publish(topic("st-a", "ack"), b"config applied")
    station.publish(topic("st-a", "state"), b"online", retain=True)
    center.until(lambda p: len(p.messages) >= 3, "config, answer and state")
    assert sorted(center.payloads()) == [b"config applied", b"desired config", b"online"]


def test_one_stations_credentials_cannot_take_over_ingests_live_session(
    production: ProductionBroker,
) -> None:
    ingest = ingest_listening(production, client_id=INGEST, clean=False)
    for client_id, tls in itertools.product((INGEST, "", "st-b"), (True, False)):
        # Each would kick ingest off if the broker gave it the client id it asks for.
        production.probe("st-a", tls=tls, client_id=client_id).close()
    production.probe("st-b").publish(topic("st-b", "telemetry"), b"after the attempts")
    ingest.until(lambda p: b"after the attempts" in p.payloads(), "telemetry after the attempts")
    assert ingest.disconnects == []


def test_one_stations_credentials_cannot_wipe_ingests_queued_session(
    production: ProductionBroker,
) -> None:
    ingest_listening(production, client_id=INGEST, clean=False).close()
    sender = production.probe("st-b")
    queued = [f"queued {n}".encode() for n in range(5)]
    for payload in queued:
        sender.publish(topic("st-b", "telemetry"), payload)
    # A clean-session CONNECT under ingest's client id would discard its session and queue.
    for tls in (True, False):
        production.probe("st-a", tls=tls, client_id=INGEST, clean=True).close()

    ingest = production.probe(INGEST, client_id=INGEST, clean=False)
    assert ingest.session_present is True
    ingest.until(lambda p: len(p.messages) >= len(queued), "the queued messages")
    assert ingest.payloads() == queued


def test_one_stations_credentials_cannot_take_over_another_station(
    production: ProductionBroker,
) -> None:
    ingest = ingest_listening(production)
    victim = production.probe(
        "st-b", client_id="edge-st-b", will=(topic("st-b", "state"), b"offline (will)")
    )
    for client_id, tls in itertools.product(("edge-st-b", "st-b"), (True, False)):
        production.probe("st-a", tls=tls, client_id=client_id).close()
    victim.publish(topic("st-b", "telemetry"), b"still here")
    ingest.until(lambda p: b"still here" in p.payloads(), "the victim's telemetry")
    assert victim.disconnects == []
    assert b"offline (will)" not in ingest.payloads()  # its last will never fired


def test_rotated_credentials_take_over_on_sighup(pki: Path, tmp_path: Path) -> None:
    root = tmp_path / "pki"
    shutil.copytree(pki, root)
    with running_broker(root, tmp_path / "broker") as production:
        old = production.auth("st-a", tls=True)
        provision(root, station_account("st-a"), rotate=True)
        new = production.auth("st-a", tls=True)  # new password, key and certificate
        stale = new.model_copy(update={"password": old.password})
        assert refused(production.probe("st-a", auth=new, connect=False))  # not reloaded yet
        assert production.probe("st-a", auth=stale).connack == 0
        production.signal(signal.SIGHUP)
        production.probe(INGEST)  # a round trip after the signal: the reload is done
        assert production.probe("st-a", auth=new).connack == 0
        assert refused(production.probe("st-a", auth=stale, connect=False))


def test_only_the_node_publishes_case_events_and_stations_cannot_read_them(
    production: ProductionBroker,
) -> None:
    """The node publishes case events on its one session (ingest's account); the center's
    account reads them; a station neither reads them nor forges one."""
    center = production.probe(CENTER)
    center.subscribe(CASE_EVENTS_TOPIC)
    station = production.probe("st-a", v5=True)
    station.subscribe(CASE_EVENTS_TOPIC, f"{TOPIC_ROOT}/center/#", topic("st-a", "cmd"))
    assert station.publish(CASE_EVENTS_TOPIC, b"forged").value == NOT_AUTHORIZED_V5
    node = production.probe(INGEST)
    node.publish(CASE_EVENTS_TOPIC, b'{"id": 1}')
    node.publish(topic("st-a", "cmd"), b"marker")  # delivered to the station after the event
    center.until(lambda p: len(p.messages) >= 1, "the node's case event")
    station.until(lambda p: b"marker" in p.payloads(), "the station's marker")
    assert center.payloads() == [b'{"id": 1}']
    assert station.payloads() == [b"marker"]
