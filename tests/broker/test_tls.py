"""The stations' TLS listener with certificates from `citysense provision`: ours get in, nothing
else does (another CA on either side, no client certificate, plain MQTT)."""

from __future__ import annotations

import gc
import ssl
import warnings
from pathlib import Path

import pytest

from citysense import pki
from protocol.connection import MqttAuth
from tests.broker.conftest import ProductionBroker, password
from tests.broker.probe import Probe, ProbeError

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stranger(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another CA with a client certificate for st-a: right name, wrong issuer."""
    folder = tmp_path_factory.mktemp("stranger")
    ca, ca_key = pki.create_ca("some other CA", 30)
    cert, key = pki.issue(ca, ca_key, "st-a", days=30)
    (folder / "ca.crt").write_bytes(pki.cert_pem(ca))
    (folder / "client.crt").write_bytes(pki.cert_pem(cert))
    (folder / "client.key").write_bytes(pki.key_pem(key))
    return folder


def connects(probe: Probe) -> bool:
    """True on CONNACK success; False when the TLS handshake or the connection failed."""
    try:
        code = probe.connect(expect_ok=False)
    except (ssl.SSLError, OSError):
        return False
    return code is not None and not code.is_failure


def test_a_station_connects_with_its_provisioned_certificate(production: ProductionBroker) -> None:
    probe = production.probe("st-a", connect=False)
    assert probe.auth.uses_tls
    assert probe.port == production.tls_port
    assert connects(probe)
    assert probe.client.socket() is not None
    assert isinstance(probe.client.socket(), ssl.SSLSocket)


def test_the_client_refuses_a_broker_signed_by_another_ca(
    production: ProductionBroker, stranger: Path
) -> None:
    ours = production.auth("st-a", tls=True)
    trusting_the_stranger = ours.model_copy(update={"ca_file": stranger / "ca.crt"})
    with warnings.catch_warnings():  # paho leaves the failed handshake's socket to the GC
        warnings.simplefilter("ignore", ResourceWarning)
        with pytest.raises(ssl.SSLCertVerificationError):
            production.probe("st-a", auth=trusting_the_stranger, connect=False).connect()
        gc.collect()


@pytest.mark.parametrize("client_cert", ["another CA's", "none"])
def test_the_broker_refuses_a_client_certificate_not_from_our_ca(
    production: ProductionBroker, stranger: Path, client_cert: str
) -> None:
    bundle = production.pki / "stations" / "st-a"
    files: dict[str, Path | None] = {"cert_file": None, "key_file": None}
    if client_cert == "another CA's":
        files = {"cert_file": stranger / "client.crt", "key_file": stranger / "client.key"}
    auth = MqttAuth(
        username="st-a",
        password=password(production.pki, "st-a"),
        ca_file=bundle / "ca.crt",
        **files,  # type: ignore[arg-type]
    )
    assert not connects(production.probe("st-a", auth=auth, connect=False))


def test_plain_mqtt_is_refused_on_the_tls_listener(production: ProductionBroker) -> None:
    plain = production.auth("st-a", tls=False)
    probe = Probe(production.tls_port, plain)
    try:
        assert not connects(probe)
    except ProbeError:  # no CONNACK at all: refused
        pass
    finally:
        probe.close()
