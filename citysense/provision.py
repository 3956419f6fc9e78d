"""Provision the production broker's credentials: a CA, the broker's certificate, and one
account per base station or service (docs/broker.md walks through it)::

    citysense provision ca                                 # once per deployment
    citysense provision server mqtt.city.example 10.1.2.3  # the broker's TLS certificate
    citysense provision service ingest                     # and: center
    citysense provision station st-410105-001              # one per base station

Everything goes under one directory (``--dir``, env ``CITYSENSE_PROVISION_DIR``, default
``data/pki``)::

    ca/ca.crt  ca/ca.key            the CA; keep the key offline once the fleet is provisioned
    broker/                         copy to /etc/mosquitto/citysense/ on the broker node:
        ca.crt server.crt server.key citysense.passwd citysense.acl
    stations/<station id>/          install on the base station (e.g. /etc/citysense/):
        ca.crt client.crt client.key mqtt.env
    services/<ingest|center>/       the same for a service account

``mqtt.env`` holds the client's settings (``CITYSENSE_EDGE_MQTT_*``, ``CITYSENSE_INGEST_MQTT_*``)
for a systemd ``EnvironmentFile``; it is the only place a password is kept in clear. The ACL
needs no per-station entry: its patterns pin every station to the topics named by its
username, which is its station id.

Every command is idempotent: what exists and is sound is kept, what is missing is created, a
certificate that expires within 30 days or no longer matches is re-issued. ``--rotate`` issues
a station new credentials (password, key, certificate); the broker takes the new password
file on ``SIGHUP``.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path, PurePosixPath

from cryptography import x509

from citysense import pki
from citysense.broker import BROKER_CONFIG_DIR

DEFAULT_DIR = Path("data/pki")
SERVICE_PREFIX = "citysense-"
"""Service usernames start with it; no station may (its credentials would be a service's)."""
PASSWD = "citysense.passwd"
ACL = "citysense.acl"
STATION_CERT_DAYS = 730
SERVER_CERT_DAYS = 730
CA_DAYS = 3650
STATION_INSTALL_DIR = PurePosixPath("/etc/citysense")
"""Where a station's bundle is installed: mqtt.env names the certificate files there."""


class ProvisionError(RuntimeError):
    """A provisioning step that cannot go ahead; the message says what to do."""


class Service(StrEnum):
    INGEST = "ingest"
    CENTER = "center"


@dataclass(frozen=True, slots=True)
class Step:
    """One thing a command did to one file: created, kept, replaced or restored (and why)."""

    action: str
    path: Path
    why: str = ""

    def __str__(self) -> str:
        return f"{self.action:<9}{self.path}" + (f"  ({self.why})" if self.why else "")


@dataclass(frozen=True, slots=True)
class Account:
    username: str
    folder: str
    env_prefix: str
    settings: Mapping[str, str]
    """Settings written into mqtt.env besides the credentials."""
    tls_settings: bool
    """Whether mqtt.env points the client at the certificate files (stations: always)."""


def station_account(
    station_id: str,
    *,
    install_dir: PurePosixPath = STATION_INSTALL_DIR,
    broker_host: str | None = None,
    broker_port: int = 8883,
) -> Account:
    from protocol.topics import STATION_ID_PATTERN  # protocol's models: not for --help

    if not re.fullmatch(STATION_ID_PATTERN, station_id):
        raise ProvisionError(f"invalid station id {station_id!r} (pattern {STATION_ID_PATTERN})")
    if station_id.startswith(SERVICE_PREFIX):
        raise ProvisionError(f"station ids starting with {SERVICE_PREFIX!r} are service accounts")
    settings = {"STATION_ID": station_id, "MQTT_PORT": str(broker_port)}
    if broker_host is not None:
        settings["MQTT_HOST"] = broker_host
    settings |= {
        "MQTT_CA_FILE": str(install_dir / "ca.crt"),
        "MQTT_CERT_FILE": str(install_dir / "client.crt"),
        "MQTT_KEY_FILE": str(install_dir / "client.key"),
    }
    return Account(station_id, f"stations/{station_id}", "CITYSENSE_EDGE_", settings, True)


def service_account(service: Service) -> Account:
    """A service on the broker node: plain MQTT on the loopback listener (port 1883)."""
    settings = {"MQTT_HOST": "127.0.0.1", "MQTT_PORT": "1883"}
    prefix = f"CITYSENSE_{service.value.upper()}_"
    return Account(
        f"{SERVICE_PREFIX}{service.value}", f"services/{service}", prefix, settings, False
    )


@dataclass(frozen=True)
class Layout:
    root: Path

    @property
    def ca_cert(self) -> Path:
        return self.root / "ca" / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.root / "ca" / "ca.key"

    @property
    def broker(self) -> Path:
        return self.root / "broker"

    @property
    def passwd(self) -> Path:
        return self.broker / PASSWD

    def bundle(self, account: Account) -> Path:
        return self.root / account.folder


def create_ca(root: Path, *, common_name: str = "citysense CA", days: int = CA_DAYS) -> list[Step]:
    layout = Layout(root)
    with _locked(root):
        if layout.ca_cert.exists() or layout.ca_key.exists():
            _load_ca(layout)  # both there and readable, or a clear error
            steps = [Step("kept", layout.ca_cert)]
        else:
            cert, key = pki.create_ca(common_name, days)
            _write(layout.ca_key, pki.key_pem(key), 0o600)
            _write(layout.ca_cert, pki.cert_pem(cert), 0o644)
            steps = [Step("created", layout.ca_key), Step("created", layout.ca_cert)]
        return steps + _broker_files(layout)


def issue_server(root: Path, names: list[str], *, days: int = SERVER_CERT_DAYS) -> list[Step]:
    """The broker's certificate for the names stations connect to (DNS names or IPs)."""
    if not names:
        raise ProvisionError("name the broker as stations reach it (DNS names, IP addresses)")
    layout = Layout(root)
    with _locked(root):
        ca, ca_key = _load_ca(layout)
        steps = _certificate(
            layout.broker / "server.crt",
            layout.broker / "server.key",
            (ca, ca_key),
            names[0],
            days=days,
            server_names=names,
        )
        return steps + _broker_files(layout)


def provision(root: Path, account: Account, *, rotate: bool = False) -> list[Step]:
    """Create (or keep, or with ``rotate`` replace) an account's password and certificate."""
    layout = Layout(root)
    with _locked(root):
        ca = _load_ca(layout)
        bundle = layout.bundle(account)
        env_path = bundle / "mqtt.env"
        entries = read_passwd(layout.passwd)
        entry = entries.get(account.username)
        existing = _env_values(env_path)
        password = None if rotate else _env_password(existing, env_path, account)
        if "MQTT_HOST" not in account.settings and (host := existing.get("MQTT_HOST")):
            account = replace(account, settings={**account.settings, "MQTT_HOST": host})
        steps: list[Step] = []
        if password is None and entry is not None and not rotate:
            raise ProvisionError(
                f"{layout.passwd} has an entry for {account.username!r} but {env_path} is "
                "missing: its password cannot be recovered; issue new credentials with --rotate"
            )
        if password is not None and entry is not None and not pki.verify_password(password, entry):
            raise ProvisionError(
                f"the password in {env_path} does not match {layout.passwd} for "
                f"{account.username!r}; issue new credentials with --rotate"
            )
        if entry is not None and not rotate:
            steps.append(Step("kept", layout.passwd, f"entry {account.username}"))
        else:
            if password is not None:
                steps.append(Step("restored", layout.passwd, f"entry {account.username}"))
            else:
                password = pki.new_password()
                action = "replaced" if entry is not None else "added"
                steps.append(Step(action, layout.passwd, f"entry {account.username}"))
            entries[account.username] = pki.hash_password(password)
            write_passwd(layout.passwd, entries)
        assert password is not None  # kept entries were verified against it above
        steps += _copy(layout.ca_cert, bundle / "ca.crt")
        steps += _certificate(
            bundle / "client.crt",
            bundle / "client.key",
            ca,
            account.username,
            days=STATION_CERT_DAYS,
            force="--rotate" if rotate else None,
        )
        steps += _write_if_changed(env_path, _env_text(account, password).encode(), 0o600)
        return steps + _broker_files(layout)


def read_passwd(path: Path) -> dict[str, str]:
    """A Mosquitto password file as {username: hash}, in file order."""
    entries: dict[str, str] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            if line.strip() and not line.startswith("#"):
                username, _, hashed = line.partition(":")
                entries[username] = hashed
    return entries


def write_passwd(path: Path, entries: Mapping[str, str]) -> None:
    _write(path, "".join(f"{u}:{h}\n" for u, h in entries.items()).encode(), 0o640)


def render_broker_config(
    template: str,
    *,
    conf_dir: Path,
    data_dir: Path,
    tls_port: int,
    local_port: int,
    tls_bind: str = "",
    user: str | None = None,
    log_dest: str | None = None,
) -> str:
    """production.conf with its file paths under ``conf_dir``/``data_dir`` and the listener
    ports changed (the test suite runs it on free loopback ports)."""
    out: list[str] = []
    seen: set[str] = set()
    for line in template.splitlines():
        key, _, value = line.partition(" ")
        if key in {"password_file", "acl_file", "cafile", "certfile", "keyfile", "crlfile"}:
            line = f"{key} {conf_dir / PurePosixPath(value.strip()).name}"
        elif key == "persistence_location":
            line = f"{key} {data_dir}/"
        elif key == "listener" and value.split()[0] == "8883":
            line = f"listener {tls_port} {tls_bind}".rstrip()
        elif key == "listener" and value.split()[0] == "1883":
            line = f"listener {local_port} 127.0.0.1"
        elif key == "user" and user is not None:
            line = f"user {user}"
        elif key == "log_dest" and log_dest is not None:
            line = f"log_dest {log_dest}"
        else:
            out.append(line)
            continue
        seen.add(key if key != "listener" else f"listener {value.split()[0]}")
        out.append(line)
    wanted = {"password_file", "acl_file", "persistence_location", "listener 8883", "listener 1883"}
    if missing := wanted - seen:
        raise ProvisionError(f"the broker template lacks: {', '.join(sorted(missing))}")
    return "\n".join(out) + "\n"


def _load_ca(layout: Layout) -> tuple[x509.Certificate, pki.PrivateKey]:
    if not layout.ca_cert.exists() or not layout.ca_key.exists():
        raise ProvisionError(
            f"no CA in {layout.root / 'ca'}: create it with "
            f"`citysense provision ca --dir {layout.root}` (or give the right --dir)"
        )
    try:
        cert = x509.load_pem_x509_certificate(layout.ca_cert.read_bytes())
        key = pki.load_key(layout.ca_key.read_bytes())
    except ValueError as exc:
        raise ProvisionError(f"cannot read the CA in {layout.root / 'ca'}: {exc}") from None
    if cert.public_key() != key.public_key():
        raise ProvisionError(f"{layout.ca_key} is not the key of {layout.ca_cert}")
    return cert, key


def _certificate(
    cert_path: Path,
    key_path: Path,
    ca: tuple[x509.Certificate, pki.PrivateKey],
    common_name: str,
    *,
    days: int,
    server_names: list[str] | None = None,
    force: str | None = None,
) -> list[Step]:
    why = force
    if why is None:
        if not cert_path.exists() or not key_path.exists():
            why = "missing"
        else:
            try:
                cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
                key = pki.load_key(key_path.read_bytes())
            except ValueError:
                why = "unreadable"
            else:
                why = pki.problem(cert, key, ca[0], common_name, server_names or ())
    if why is None:
        return [Step("kept", cert_path)]
    cert, key = pki.issue(ca[0], ca[1], common_name, days=days, server_names=server_names or ())
    action = "created" if why == "missing" else "replaced"
    _write(key_path, pki.key_pem(key), 0o600)
    _write(cert_path, pki.cert_pem(cert), 0o644)
    return [Step(action, key_path), Step(action, cert_path, "" if why == "missing" else why)]


def _broker_files(layout: Layout) -> list[Step]:
    """The broker folder always holds the CA certificate and the ACL of this checkout."""
    steps = _copy(layout.ca_cert, layout.broker / "ca.crt")
    steps += _copy(BROKER_CONFIG_DIR / ACL, layout.broker / ACL)
    if not layout.passwd.exists():
        write_passwd(layout.passwd, {})
    return [s for s in steps if s.action != "kept"]


def _env_text(account: Account, password: str) -> str:
    p = account.env_prefix
    lines = [f"# MQTT settings of {account.username} (citysense provision); keep it private."]
    lines += [f"{p}{key}={value}" for key, value in sorted(account.settings.items())]
    lines += [f"{p}MQTT_USERNAME={account.username}", f"{p}MQTT_PASSWORD={password}"]
    if not account.tls_settings:
        lines.append("# Over TLS (listener 8883): install ca.crt, client.crt, client.key and set")
        lines += [f"# {p}MQTT_{k}_FILE=/etc/citysense/{f}" for k, f in _TLS_FILES]
    return "\n".join(lines) + "\n"


_TLS_FILES = (("CA", "ca.crt"), ("CERT", "client.crt"), ("KEY", "client.key"))


def _env_values(path: Path) -> dict[str, str]:
    """mqtt.env as {name without the service prefix: value}."""
    if not path.exists():
        return {}
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        name, sep, value = line.partition("=")
        if sep and not name.startswith("#") and name.startswith("CITYSENSE_"):
            values[name.split("_", 2)[2]] = value.strip()
    return values


def _env_password(values: Mapping[str, str], path: Path, account: Account) -> str | None:
    if not path.exists():
        return None
    if "MQTT_PASSWORD" not in values:
        raise ProvisionError(f"{path} has no MQTT password; issue new credentials with --rotate")
    return values["MQTT_PASSWORD"]


def _copy(source: Path, target: Path) -> list[Step]:
    data = source.read_bytes()
    return _write_if_changed(target, data, 0o644)


def _write_if_changed(path: Path, data: bytes, mode: int) -> list[Step]:
    if path.exists() and path.read_bytes() == data:
        return [Step("kept", path)]
    action = "replaced" if path.exists() else "created"
    _write(path, data, mode)
    return [Step(action, path)]


def _write(path: Path, data: bytes, mode: int) -> None:
    """Atomically: a reader (the broker on SIGHUP) sees the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    """One provisioning command at a time per directory (the password file is shared)."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        lock = (root / ".lock").open("a")
    except OSError as exc:
        raise ProvisionError(f"cannot use {root}: {exc.strerror}") from None
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield
