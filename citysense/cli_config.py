"""`citysense config push STATION FILE`: publish a station's desired config and wait for its answer.

FILE is TOML or JSON with the fields of ``protocol.StationConfig`` (``station_id`` comes from
STATION). The version is ``--version``, else the file's ``config_version``, else one more than
the config retained on the broker now. The config is published retained at QoS 1; the command
waits for the station's ``ConfigAck`` of that version. A rejected config is taken off the
broker again (the one retained before is put back, or none), so the station does not refuse it
on every reconnect.

Exit codes: 0 applied (or already current), 1 rejected, no answer in time (the config stays
retained and is applied when the station comes online) or no broker, 2 bad input. Errors are one
line on stderr.
"""

from __future__ import annotations

import asyncio
import json
import tomllib
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from citysense.cli_common import BAD_INPUT, FAILED, MqttHost, MqttPort, console, fail, one_line

if TYPE_CHECKING:
    from protocol import ConfigAck, StationConfig

RETAINED_WAIT_S = 0.5
"""How long to wait for the config retained now (it comes right after the subscription)."""

config_app = typer.Typer(
    help="Remote config of stations: push a desired config, wait for the answer.",
    no_args_is_help=True,
)


class ConfigInputError(ValueError):
    """A config file or option that cannot become a ``StationConfig``."""


def read_config_file(path: Path) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigInputError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        if path.suffix.lower() == ".json":
            document = json.loads(raw)
        else:
            document = tomllib.loads(raw.decode())
    except (UnicodeDecodeError, ValueError) as exc:
        kind = "JSON" if path.suffix.lower() == ".json" else "TOML"
        raise ConfigInputError(f"{path}: not valid {kind}: {exc}") from None
    if not isinstance(document, dict):
        raise ConfigInputError(f"{path}: a config is an object / table")
    return document


async def push_config(
    host: str,
    port: int,
    station_id: str,
    document: dict[str, Any],
    version: int | None,
    *,
    answer_within_s: float,
) -> tuple[StationConfig, ConfigAck | None]:
    """Publish the config; return (the config sent, its ``ConfigAck`` or None on timeout)."""
    import aiomqtt
    from pydantic import ValidationError

    from protocol import (
        Channel,
        ConfigAck,
        PayloadError,
        StationConfig,
        StationTopic,
        decode_any_ack,
        decode_config,
        encode,
    )

    config_topic = StationTopic(station_id, Channel.CONFIG)
    ack_topic = StationTopic(station_id, Channel.ACK)
    async with aiomqtt.Client(
        host, port, identifier=f"citysense-config-{uuid.uuid4().hex}"
    ) as client:
        await client.subscribe(str(ack_topic), qos=1)
        await client.subscribe(str(config_topic), qos=1)
        before: bytes | None = None
        try:
            async with asyncio.timeout(RETAINED_WAIT_S):
                async for message in client.messages:
                    if str(message.topic) == str(config_topic) and message.retain:
                        before = message.payload if isinstance(message.payload, bytes) else None
                        break
        except TimeoutError:
            pass
        await client.unsubscribe(str(config_topic))
        if version is None and "config_version" not in document:
            current = 0
            if before:
                try:
                    current = decode_config(config_topic, before).config_version
                except PayloadError:
                    current = 0
            version = current + 1
        fields = {**document, "station_id": station_id}
        if version is not None:
            fields["config_version"] = version
        try:
            config = StationConfig.model_validate(fields)
        except ValidationError as exc:
            raise ConfigInputError(one_line(exc)) from None
        await client.publish(str(config_topic), encode(config), qos=1, retain=True)
        answer: ConfigAck | None = None
        try:
            async with asyncio.timeout(answer_within_s):
                async for message in client.messages:
                    if str(message.topic) != str(ack_topic) or not isinstance(
                        message.payload, bytes
                    ):
                        continue
                    try:
                        ack = decode_any_ack(ack_topic, message.payload)
                    except PayloadError:
                        continue
                    if isinstance(ack, ConfigAck) and ack.offered_version == config.config_version:
                        answer = ack
                        break
        except TimeoutError:
            pass
        if answer is not None and answer.status == "rejected":
            await client.publish(str(config_topic), before or b"", qos=1, retain=True)
        return config, answer


def push(
    station: Annotated[str, typer.Argument(help="The station's id.")],
    file: Annotated[Path, typer.Argument(help="The desired config, TOML or JSON.")],
    mqtt_host: MqttHost = "127.0.0.1",
    mqtt_port: MqttPort = 1883,
    config_version: Annotated[
        int | None,
        typer.Option(
            min=1, help="Config version (default: the file's config_version, else current + 1)."
        ),
    ] = None,
    timeout: Annotated[
        float, typer.Option(min=0, help="Seconds to wait for the station's answer.")
    ] = 10.0,
    version: Annotated[
        int | None, typer.Option("--version", min=1, hidden=True, help="Old --config-version.")
    ] = None,
) -> None:
    """Publish STATION's desired config (retained, QoS 1) and print the station's answer."""
    import aiomqtt

    from protocol import TopicError

    if version is not None and config_version not in (None, version):
        fail("--version is the old name of --config-version: give one of them")
    if config_version is None:
        config_version = version
    try:
        document = read_config_file(file)
        config, ack = asyncio.run(
            push_config(
                mqtt_host, mqtt_port, station, document, config_version, answer_within_s=timeout
            )
        )
    except (ConfigInputError, TopicError) as exc:
        fail(f"bad config: {exc}", BAD_INPUT)
    except aiomqtt.MqttError as exc:
        fail(f"broker {mqtt_host}:{mqtt_port}: {exc}", FAILED)
    if ack is None:
        console.print(
            f"config {config.config_version} for {station} published (retained); no answer "
            f"within {timeout:g} s: it applies when the station comes online",
            soft_wrap=True,
        )
        raise typer.Exit(FAILED)
    console.print(ack.model_dump_json(), soft_wrap=True, markup=False, highlight=False)
    if ack.status == "rejected":
        console.print(f"[red]rejected[/]: {ack.reason}", soft_wrap=True)
        raise typer.Exit(FAILED)


config_app.command()(push)
