"""A real Mosquitto running broker_config/production.conf, with credentials from
``citysense provision`` in a temp dir: the TLS listener and the loopback listener each on a free
loopback port, persistence in a temp dir."""

from __future__ import annotations

import contextlib
import getpass
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from citysense.broker import BROKER_CONFIG_DIR, MosquittoBroker, free_port, wait_for_port
from citysense.provision import (
    Service,
    create_ca,
    issue_server,
    provision,
    render_broker_config,
    service_account,
    station_account,
)
from protocol.connection import MqttAuth
from tests.broker.probe import Probe

STATIONS = ("st-a", "st-b")
BUNDLES = {"st-a": "stations/st-a", "st-b": "stations/st-b"} | {
    f"citysense-{s}": f"services/{s}" for s in Service
}


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA, the broker's certificate (127.0.0.1, localhost), two stations, both services."""
    root = tmp_path_factory.mktemp("pki")
    create_ca(root)
    issue_server(root, ["127.0.0.1", "localhost"])
    for service in Service:
        provision(root, service_account(service))
    for station in STATIONS:
        provision(root, station_account(station))
    return root


def password(pki: Path, username: str) -> str:
    for line in (pki / BUNDLES[username] / "mqtt.env").read_text().splitlines():
        if "_MQTT_PASSWORD=" in line:
            return line.split("=", 1)[1]
    raise AssertionError(f"no password for {username}")


@dataclass
class ProductionBroker:
    pki: Path
    workdir: Path
    tls_port: int = field(default_factory=free_port)
    local_port: int = field(default_factory=free_port)
    template: str = field(default_factory=(BROKER_CONFIG_DIR / "production.conf").read_text)
    _broker: MosquittoBroker | None = None
    _probes: list[Probe] = field(default_factory=list)

    def start(self) -> ProductionBroker:
        (self.workdir / "data").mkdir(parents=True, exist_ok=True)
        config = self.workdir / "mosquitto.conf"
        config.write_text(
            render_broker_config(
                self.template,
                conf_dir=self.pki / "broker",
                data_dir=self.workdir / "data",
                tls_port=self.tls_port,
                local_port=self.local_port,
                tls_bind="127.0.0.1",
                user=getpass.getuser(),  # as root, Mosquitto would switch to `mosquitto`
                log_dest="stderr",
            )
        )
        self._broker = MosquittoBroker(config=config, port=self.local_port, listen=False).start()
        wait_for_port("127.0.0.1", self.tls_port)
        return self

    def kill(self) -> None:
        """kill -9: no goodbye save of the in-memory database."""
        if self._broker is not None:
            self._broker.kill()
            self._broker = None

    def stop(self) -> None:
        for probe in self._probes:
            probe.close()
        if self._broker is not None:
            self._broker.stop()
            self._broker = None

    def log(self) -> str:
        return self._broker.log() if self._broker is not None else ""

    def signal(self, signum: int) -> None:
        assert self._broker is not None
        self._broker.signal(signum)

    def auth(self, username: str | None, *, tls: bool, secret: str | None = None) -> MqttAuth:
        """An account's provisioned credentials (``secret`` overrides the password)."""
        if username is None:
            bundle = self.pki / BUNDLES["st-a"]
            pw = None
        else:
            bundle = self.pki / BUNDLES[username]
            pw = secret if secret is not None else password(self.pki, username)
        if not tls:
            return MqttAuth(username=username, password=pw)
        return MqttAuth(
            username=username,
            password=pw,
            ca_file=bundle / "ca.crt",
            cert_file=bundle / "client.crt",
            key_file=bundle / "client.key",
        )

    def probe(
        self,
        username: str | None,
        *,
        tls: bool | None = None,
        auth: MqttAuth | None = None,
        connect: bool = True,
        **options: object,
    ) -> Probe:
        """A client of ``username``: stations over TLS, services on the loopback listener."""
        use_tls = tls if tls is not None else username in STATIONS
        probe = Probe(
            self.tls_port if use_tls else self.local_port,
            auth or self.auth(username, tls=use_tls),
            **options,  # type: ignore[arg-type]
        )
        self._probes.append(probe)
        if connect:
            probe.connect()
        return probe


@contextlib.contextmanager
def running_broker(
    pki: Path, workdir: Path, template: str | None = None
) -> Iterator[ProductionBroker]:
    broker = ProductionBroker(pki, workdir)
    if template is not None:
        broker.template = template
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def production(pki: Path, tmp_path: Path) -> Iterator[ProductionBroker]:
    """A broker of the test's own: no session, retained message or queue of another test."""
    with running_broker(pki, tmp_path) as broker:
        yield broker
