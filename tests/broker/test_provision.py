"""`citysense provision`: idempotent, clear errors, files Mosquitto and the clients can use."""

from __future__ import annotations

import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from typer.testing import CliRunner

from citysense import pki
from citysense.broker import BROKER_CONFIG_DIR
from citysense.cli import app
from citysense.provision import (
    ProvisionError,
    Service,
    create_ca,
    issue_server,
    provision,
    read_passwd,
    render_broker_config,
    service_account,
    station_account,
)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    create_ca(tmp_path)
    return tmp_path


def test_a_second_run_keeps_everything(root: Path) -> None:
    issue_server(root, ["mqtt.city.example", "10.1.2.3"])
    provision(root, station_account("st-410105-001"))
    provision(root, service_account(Service.INGEST))
    before = _files(root)
    again = create_ca(root) + issue_server(root, ["10.1.2.3", "mqtt.city.example"])
    again += provision(root, station_account("st-410105-001"))
    again += provision(root, service_account(Service.INGEST))
    assert {step.action for step in again} == {"kept"}
    assert _files(root) == before


def test_a_station_gets_a_password_entry_a_certificate_and_its_settings(root: Path) -> None:
    provision(root, station_account("st-410105-001", broker_host="mqtt.city.example"))
    bundle = root / "stations" / "st-410105-001"
    env = dict(
        line.split("=", 1) for line in (bundle / "mqtt.env").read_text().splitlines() if "=" in line
    )
    assert env["CITYSENSE_EDGE_STATION_ID"] == env["CITYSENSE_EDGE_MQTT_USERNAME"]
    assert env["CITYSENSE_EDGE_MQTT_HOST"] == "mqtt.city.example"
    assert env["CITYSENSE_EDGE_MQTT_CERT_FILE"] == "/etc/citysense/client.crt"
    entry = read_passwd(root / "broker" / "citysense.passwd")["st-410105-001"]
    assert pki.verify_password(env["CITYSENSE_EDGE_MQTT_PASSWORD"], entry)
    cert = x509.load_pem_x509_certificate((bundle / "client.crt").read_bytes())
    ca = x509.load_pem_x509_certificate((root / "ca" / "ca.crt").read_bytes())
    cert.verify_directly_issued_by(ca)
    assert cert.subject.rfc4514_string() == "CN=st-410105-001,O=citysense"
    for private in (bundle / "client.key", bundle / "mqtt.env", root / "ca" / "ca.key"):
        assert stat.S_IMODE(private.stat().st_mode) == 0o600
    shipped = (BROKER_CONFIG_DIR / "citysense.acl").read_text()
    assert (root / "broker" / "citysense.acl").read_text() == shipped  # no entry per station


def test_rotation_replaces_password_key_and_certificate(root: Path) -> None:
    account = station_account("st-1")
    provision(root, account)
    before = _files(root)
    steps = provision(root, account, rotate=True)
    after = _files(root)
    assert {str(s.path.relative_to(root)) for s in steps if s.action == "replaced"} >= {
        "broker/citysense.passwd",
        "stations/st-1/client.key",
        "stations/st-1/client.crt",
        "stations/st-1/mqtt.env",
    }
    for name in ("client.key", "client.crt", "mqtt.env"):
        assert after[f"stations/st-1/{name}"] != before[f"stations/st-1/{name}"]


def test_a_lost_password_file_is_restored_from_the_bundles(root: Path) -> None:
    provision(root, station_account("st-1"))
    entry = read_passwd(root / "broker" / "citysense.passwd")["st-1"]
    (root / "broker" / "citysense.passwd").unlink()
    steps = provision(root, station_account("st-1"))
    assert [s.action for s in steps if s.path.name == "citysense.passwd"] == ["restored"]
    restored = read_passwd(root / "broker" / "citysense.passwd")["st-1"]
    assert restored != entry  # a new salt; the same password, which the bundle still holds
    provision(root, station_account("st-1"))  # and it verifies: kept


def test_an_entry_without_its_bundle_needs_rotate(root: Path) -> None:
    provision(root, station_account("st-1"))
    shutil.rmtree(root / "stations" / "st-1")
    with pytest.raises(ProvisionError, match="--rotate"):
        provision(root, station_account("st-1"))
    provision(root, station_account("st-1"), rotate=True)


def test_a_certificate_near_its_end_is_reissued(root: Path) -> None:
    issue_server(root, ["localhost"], days=10)
    steps = issue_server(root, ["localhost"])
    assert next(s.why for s in steps if s.path.name == "server.crt").startswith("expires")


@pytest.mark.parametrize(
    ("station_id", "message"),
    [
        ("bad id", "invalid station id"),
        ("citysense-ingest", "service accounts"),
        ("st/1", "invalid station id"),
        ("x" * 65, "invalid station id"),
    ],
)
def test_bad_station_ids_are_refused(station_id: str, message: str) -> None:
    with pytest.raises(ProvisionError, match=message):
        station_account(station_id)


def test_without_a_ca_the_error_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(ProvisionError, match="citysense provision ca"):
        provision(tmp_path, station_account("st-1"))


def test_our_hashes_and_mosquitto_passwd_agree(tmp_path: Path) -> None:
    passwd = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(passwd), "st-1", "s3cret"], check=True)
    theirs = read_passwd(passwd)["st-1"]
    assert pki.verify_password("s3cret", theirs)
    assert not pki.verify_password("s3cret!", theirs)
    assert pki.verify_password("s3cret", pki.hash_password("s3cret"))
    assert not pki.verify_password("s3cret", "$1$junk")


def test_the_broker_template_must_have_what_the_renderer_moves() -> None:
    with pytest.raises(ProvisionError, match="listener 8883"):
        render_broker_config(
            "password_file /x\nacl_file /y\npersistence_location /z/\nlistener 1883 127.0.0.1\n",
            conf_dir=Path("/c"),
            data_dir=Path("/d"),
            tls_port=1,
            local_port=2,
        )


def test_cli_provisions_and_reports(tmp_path: Path) -> None:
    runner = CliRunner()
    missing = runner.invoke(app, ["provision", "station", "st-1", "--dir", str(tmp_path)])
    assert missing.exit_code == 2
    assert "citysense provision ca" in missing.output
    for args in (["ca"], ["server", "localhost", "127.0.0.1"], ["service", "ingest"]):
        assert runner.invoke(app, ["provision", *args, "--dir", str(tmp_path)]).exit_code == 0
    done = runner.invoke(app, ["provision", "station", "st-1", "--dir", str(tmp_path)])
    assert done.exit_code == 0, done.output
    assert "stations/st-1/client.crt" in done.output
    again = runner.invoke(
        app, ["provision", "station", "st-1"], env={"CITYSENSE_PROVISION_DIR": str(tmp_path)}
    )
    assert again.exit_code == 0
    assert "created" not in again.output
