"""protocol.connection: one credentials model, read from each service's environment, turned
into aiomqtt keyword arguments and paho calls."""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from pydantic import ValidationError

from citysense import pki
from edge import EdgeAgent, EdgeSettings
from ingest.settings import IngestSettings
from protocol.connection import MqttAuth, check_station_identity
from simulator import SimulatedStation, build_city


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("certs")
    ca, ca_key = pki.create_ca("test CA", 1)
    cert, key = pki.issue(ca, ca_key, "st-1", days=1)
    (folder / "ca.crt").write_bytes(pki.cert_pem(ca))
    (folder / "client.crt").write_bytes(pki.cert_pem(cert))
    (folder / "client.key").write_bytes(pki.key_pem(key))
    return folder


@dataclass
class PahoCalls:
    """Records what MqttAuth.apply_to_paho asks of a paho client."""

    calls: list[tuple[str, object]] = field(default_factory=list)

    def username_pw_set(self, username: str, password: str | None = None) -> None:
        self.calls.append(("username_pw_set", (username, password)))

    def tls_set_context(self, context: ssl.SSLContext) -> None:
        self.calls.append(("tls_set_context", context))


def test_nothing_set_is_anonymous_plain_mqtt() -> None:
    auth = MqttAuth()
    assert auth.aiomqtt_kwargs() == {"username": None, "password": None, "tls_context": None}
    paho = PahoCalls()
    auth.apply_to_paho(paho)  # type: ignore[arg-type]
    assert paho.calls == []


def test_credentials_and_certificates_reach_both_libraries(certs: Path) -> None:
    auth = MqttAuth(
        username="st-1",
        password="pw",  # type: ignore[arg-type]
        ca_file=certs / "ca.crt",
        cert_file=certs / "client.crt",
        key_file=certs / "client.key",
    )
    kwargs = auth.aiomqtt_kwargs()
    assert (kwargs["username"], kwargs["password"]) == ("st-1", "pw")
    context = kwargs["tls_context"]
    assert context is not None
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
    paho = PahoCalls()
    auth.apply_to_paho(paho)  # type: ignore[arg-type]
    assert paho.calls[0] == ("username_pw_set", ("st-1", "pw"))
    assert paho.calls[1][0] == "tls_set_context"
    assert "pw" not in repr(auth)


def test_tls_without_a_ca_file_trusts_the_system_store() -> None:
    context = MqttAuth(tls=True).ssl_context()
    assert context is not None
    assert context.cert_store_stats()["x509_ca"] >= 0  # loaded the defaults, no error


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"password": "pw"}, "needs a username"),
        ({"cert_file": "CERT"}, "needs its key"),
        ({"ca_file": "/does/not/exist"}, "does not point to a file"),
    ],
)
def test_inconsistent_settings_are_refused(
    fields: dict[str, str], message: str, certs: Path
) -> None:
    values = {k: str(certs / "client.crt") if v == "CERT" else v for k, v in fields.items()}
    with pytest.raises(ValidationError, match=message):
        MqttAuth.model_validate(values)
    with pytest.raises(ValidationError, match=message):
        IngestSettings.model_validate({f"mqtt_{k}": v for k, v in values.items()})


def test_each_service_reads_its_own_prefix(monkeypatch: pytest.MonkeyPatch, certs: Path) -> None:
    monkeypatch.setenv("CITYSENSE_EDGE_STATION_ID", "st-1")
    monkeypatch.setenv("CITYSENSE_EDGE_MQTT_USERNAME", "st-1")
    monkeypatch.setenv("CITYSENSE_EDGE_MQTT_PASSWORD", "edge-secret")
    monkeypatch.setenv("CITYSENSE_EDGE_MQTT_CA_FILE", str(certs / "ca.crt"))
    monkeypatch.setenv("CITYSENSE_INGEST_MQTT_USERNAME", "citysense-ingest")
    monkeypatch.setenv("CITYSENSE_INGEST_MQTT_PASSWORD", "ingest-secret")
    edge = EdgeSettings().mqtt_auth
    ingest = IngestSettings().mqtt_auth
    assert edge.username == "st-1"
    assert edge.uses_tls
    assert edge.password is not None
    assert edge.password.get_secret_value() == "edge-secret"
    assert ingest.username == "citysense-ingest"
    assert not ingest.uses_tls


def test_a_station_must_log_in_as_itself() -> None:
    check_station_identity(MqttAuth(), "st-1")
    check_station_identity(MqttAuth(username="st-1"), "st-1")
    with pytest.raises(ValueError, match="not the station id"):
        check_station_identity(MqttAuth(username="st-2"), "st-1")
    station = build_city(seed=7).stations[0]
    with pytest.raises(ValueError, match="not the station id"):
        EdgeAgent(
            station.station_id,
            SimulatedStation(station, seed=7),
            host="127.0.0.1",
            port=1883,
            auth=MqttAuth(username="someone-else"),
        )
