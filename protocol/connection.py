"""How a shipped MQTT client proves who it is: username, password and TLS.

One small model for every client (the edge agent on aiomqtt, ingest on paho) and the two
adapters that turn it into library calls. A service's settings mix in :class:`MqttAuthSettings`,
so each reads the same fields under its own prefix::

    CITYSENSE_EDGE_MQTT_USERNAME / _PASSWORD / _TLS / _CA_FILE / _CERT_FILE / _KEY_FILE
    CITYSENSE_INGEST_MQTT_USERNAME ...

Nothing set means an anonymous, plain-TCP connection (the demo and test broker). TLS is on when
``tls`` is true or any certificate file is given; ``ca_file`` unset then means the system's
trusted CAs. The broker's production config (broker_config/production.conf) ties a client's id
to its username and pins a station to the topics named by its username, so a station's
username must be its station id (:func:`check_station_identity`).

Building the model reads nothing; :meth:`MqttAuth.ssl_context` reads the certificate files, on
each call, so a renewed certificate is picked up at the next connection.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import TYPE_CHECKING, Self, TypedDict

from pydantic import BaseModel, ConfigDict, FilePath, SecretStr, model_validator

if TYPE_CHECKING:
    import paho.mqtt.client as paho


class AiomqttAuthKwargs(TypedDict):
    """The keyword arguments of ``aiomqtt.Client`` that carry identity and TLS."""

    username: str | None
    password: str | None
    tls_context: ssl.SSLContext | None


class MqttAuth(BaseModel):
    """A client's credentials for one broker."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    username: str | None = None
    password: SecretStr | None = None
    tls: bool = False
    ca_file: FilePath | None = None
    """PEM CA bundle that signed the broker's certificate; None: the system's trusted CAs."""
    cert_file: FilePath | None = None
    """PEM client certificate (the broker's TLS listener requires one: require_certificate)."""
    key_file: FilePath | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        _check(self.username, self.password, self.cert_file, self.key_file)
        return self

    @property
    def uses_tls(self) -> bool:
        return self.tls or any(f is not None for f in (self.ca_file, self.cert_file))

    def ssl_context(self) -> ssl.SSLContext | None:
        """A verifying client context (TLS 1.2 or later, host name checked), or None."""
        if not self.uses_tls:
            return None
        context = ssl.create_default_context(
            cafile=str(self.ca_file) if self.ca_file is not None else None
        )
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.cert_file is not None and self.key_file is not None:
            context.load_cert_chain(str(self.cert_file), str(self.key_file))
        return context

    def aiomqtt_kwargs(self) -> AiomqttAuthKwargs:
        """``aiomqtt.Client(host, port, **auth.aiomqtt_kwargs(), ...)``."""
        return AiomqttAuthKwargs(
            username=self.username,
            password=self.password.get_secret_value() if self.password is not None else None,
            tls_context=self.ssl_context(),
        )

    def apply_to_paho(self, client: paho.Client) -> None:
        """Set username/password and TLS on a paho client before it connects."""
        if self.username is not None:
            password = self.password.get_secret_value() if self.password is not None else None
            client.username_pw_set(self.username, password)
        context = self.ssl_context()
        if context is not None:
            client.tls_set_context(context)


def _check(
    username: str | None, password: SecretStr | None, cert: Path | None, key: Path | None
) -> None:
    if password is not None and username is None:
        raise ValueError("an MQTT password needs a username")
    if (cert is None) != (key is None):
        raise ValueError("an MQTT client certificate needs its key (cert file and key file)")


def check_station_identity(auth: MqttAuth, station_id: str) -> None:
    """Refuse a station whose username is not its id: the broker's ACL would drop its
    publishes (and with MQTT 3.1.1 still acknowledge them, so the loss would be silent)."""
    if auth.username is not None and auth.username != station_id:
        raise ValueError(
            f"MQTT username {auth.username!r} is not the station id {station_id!r}: the broker "
            "lets a station publish only under citysense/v1/stations/<its username>/"
        )


class MqttAuthSettings(BaseModel):
    """Mixin for a service's settings: ``class EdgeSettings(BaseSettings, MqttAuthSettings)``."""

    mqtt_username: str | None = None
    mqtt_password: SecretStr | None = None
    mqtt_tls: bool = False
    mqtt_ca_file: FilePath | None = None
    mqtt_cert_file: FilePath | None = None
    mqtt_key_file: FilePath | None = None

    @model_validator(mode="after")
    def _auth_is_consistent(self) -> Self:
        _check(self.mqtt_username, self.mqtt_password, self.mqtt_cert_file, self.mqtt_key_file)
        return self

    @property
    def mqtt_auth(self) -> MqttAuth:
        return MqttAuth(
            username=self.mqtt_username,
            password=self.mqtt_password,
            tls=self.mqtt_tls,
            ca_file=self.mqtt_ca_file,
            cert_file=self.mqtt_cert_file,
            key_file=self.mqtt_key_file,
        )
