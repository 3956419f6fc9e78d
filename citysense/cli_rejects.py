"""`citysense rejects list | export | replay`: work with ingest's dead letters.

Reads the dead-letter files directly (``--dead-letters``, default the ingest setting
``CITYSENSE_INGEST_DEAD_LETTER_PATH``); no running node is needed. ``export`` writes each payload
to ``<id>.payload`` beside a sidecar ``<id>.meta.json`` (topic, reason…); an operator fixes the
payloads and ``replay --from DIR`` publishes them again. Replay publishes at QoS 1 and waits for
each PUBACK; it skips alert letters (alerts never travelled on MQTT) and topics that are not
station topics (ingest would refuse them again).

Bad input (a missing or unreadable dead-letter file, a file that is not one, an unreadable
``--since``, a missing ``--from`` directory) ends with one line on stderr and exit code 2; a
broker that cannot be reached with one line and exit code 1.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from citysense.cli_common import BAD_INPUT, FAILED, UNREACHABLE, MqttHost, MqttPort, console, fail

if TYPE_CHECKING:
    from ingest.dead_letters import DeadLetter

SIDECAR_SUFFIX = ".meta.json"
PAYLOAD_SUFFIX = ".payload"

rejects_app = typer.Typer(
    help="Dead letters: list them, export them for fixing, replay them to the broker.",
    no_args_is_help=True,
)

DeadLettersPath = Annotated[
    Path | None,
    typer.Option(
        "--dead-letters",
        exists=True,
        dir_okay=False,
        readable=True,
        help="Dead-letter file (default: env CITYSENSE_INGEST_DEAD_LETTER_PATH).",
    ),
]
Reason = Annotated[str | None, typer.Option(help="Only this reason, e.g. not_json.")]
Station = Annotated[str | None, typer.Option(help="Only this station (from the topic).")]
Since = Annotated[
    str | None,
    typer.Option(help="Only letters received at or after (ISO 8601, UTC if no offset)."),
]


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message to publish again."""

    source: str
    topic: str
    payload: bytes


def _fail(message: str, code: int = BAD_INPUT) -> NoReturn:
    fail(message, code)


def _parse_since(since: str | None) -> datetime | None:
    if since is None:
        return None
    try:
        parsed = datetime.fromisoformat(since)
    except ValueError:
        _fail(f"--since {since!r} is not an ISO 8601 time")
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _selected(
    path: Path | None, reason: str | None, station: str | None, since: str | None
) -> list[DeadLetter]:
    """Matching letters, oldest first."""
    from ingest.dead_letters import JsonlDeadLetters, select
    from ingest.settings import IngestSettings

    after = _parse_since(since)
    path = path or IngestSettings().dead_letter_path
    _check_dead_letter_file(path)
    store = JsonlDeadLetters(path)
    return select(store.letters(), reason=reason, station_id=station, since=after)


def _check_dead_letter_file(path: Path) -> None:
    """A file whose first line is not a dead letter is refused (a file of another kind, given
    by mistake, would otherwise be listed as no letters and a warning per line)."""
    if not path.exists():
        return  # ingest has refused nothing yet
    try:
        with path.open("rb") as source:
            first = next((line for line in source if line.strip()), b"")
    except OSError as exc:
        _fail(f"cannot read {path}: {exc.strerror or exc}")
    if not first:
        return
    try:
        record = json.loads(first)
    except ValueError:
        record = None
    if not isinstance(record, dict) or not {"reason", "payload_b64"} <= record.keys():
        _fail(f"{path} is not a dead-letter file (JSON lines of ingest's dead letters)")


def _file_stem(letter_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", letter_id)


def _replayable(source: str, kind: str, topic: str, payload: bytes) -> Outgoing | str:
    """The message to publish, or why it is skipped."""
    from protocol import StationTopic, TopicError

    if kind == "alert":
        return "an alert letter (not an MQTT message)"
    try:
        StationTopic.parse(topic)
    except TopicError as exc:
        return f"not a station topic ({exc})"
    return Outgoing(source, topic, payload)


def from_letters(letters: Sequence[DeadLetter]) -> tuple[list[Outgoing], list[str]]:
    outgoing: list[Outgoing] = []
    skipped: list[str] = []
    for letter in letters:
        item = _replayable(letter.id, letter.kind, letter.topic, letter.payload)
        if isinstance(item, Outgoing):
            outgoing.append(item)
        else:
            skipped.append(f"{letter.id}: {item}")
    return outgoing, skipped


def from_directory(directory: Path) -> tuple[list[Outgoing], list[str]]:
    """The fixed payloads of an ``export`` directory, in id order."""
    outgoing: list[Outgoing] = []
    skipped: list[str] = []
    sidecars = sorted(
        directory.glob(f"*{SIDECAR_SUFFIX}"),
        key=lambda p: (len(p.name), p.name),  # numeric ids in numeric order
    )
    for sidecar in sidecars:
        stem = sidecar.name.removesuffix(SIDECAR_SUFFIX)
        try:
            meta: dict[str, Any] = json.loads(sidecar.read_text(encoding="utf-8"))
            payload_file = str(meta.get("payload_file", stem + PAYLOAD_SUFFIX))
            payload = (directory / payload_file).read_bytes()
            item = _replayable(stem, str(meta.get("kind", "message")), str(meta["topic"]), payload)
        except (OSError, ValueError, KeyError) as exc:
            item = f"unreadable ({exc})"
        if isinstance(item, Outgoing):
            outgoing.append(item)
        else:
            skipped.append(f"{stem}: {item}")
    return outgoing, skipped


def publish_all(items: Sequence[Outgoing], host: str, port: int) -> int:
    """Publish at QoS 1, one PUBACK at a time (in order); returns how many were acknowledged."""
    return asyncio.run(_publish_all(items, host, port))


async def _publish_all(items: Sequence[Outgoing], host: str, port: int) -> int:
    from recording.publisher import MqttPublisher

    client_id = f"citysense-rejects-{os.getpid()}"
    async with MqttPublisher(host, port, client_id, window=1) as publisher:
        for item in items:
            await publisher.publish(item.topic, item.payload, qos=1, retain=False)
        await publisher.drain()
    return len(items)


@rejects_app.command("list")
def list_rejects(
    dead_letters: DeadLettersPath = None,
    reason: Reason = None,
    station: Station = None,
    since: Since = None,
    limit: Annotated[int, typer.Option(min=1, help="Show at most this many.")] = 50,
) -> None:
    """Print the dead letters as a table, newest first."""
    from rich.table import Table
    from rich.text import Text

    letters = _selected(dead_letters, reason, station, since)
    table = Table(title=f"{len(letters)} dead letters")
    for column in ("id", "received at", "kind", "reason", "station", "topic", "bytes", "detail"):
        table.add_column(column)
    for letter in reversed(letters[-limit:]):
        cells = (
            letter.id,
            letter.received_at.isoformat(timespec="seconds"),
            letter.kind,
            letter.reason,
            letter.station_id or "",
            letter.topic,
            str(letter.size),
            letter.detail[:60],
        )
        table.add_row(*(Text(cell) for cell in cells))  # user data: never rich markup
    console.print(table)


@rejects_app.command()
def export(
    out: Annotated[Path, typer.Option(help="Directory to write <id>.payload + sidecars into.")],
    dead_letters: DeadLettersPath = None,
    reason: Reason = None,
    station: Station = None,
    since: Since = None,
) -> None:
    """Write each payload to <id>.payload for fixing, its topic to <id>.meta.json."""
    letters = _selected(dead_letters, reason, station, since)
    try:
        out.mkdir(parents=True, exist_ok=True)
        for letter in letters:
            stem = _file_stem(letter.id)
            (out / f"{stem}{PAYLOAD_SUFFIX}").write_bytes(letter.payload)
            meta = {
                "id": letter.id,
                "kind": letter.kind,
                "topic": letter.topic,
                "reason": letter.reason,
                "detail": letter.detail,
                "received_at": letter.received_at.isoformat(),
                "payload_file": f"{stem}{PAYLOAD_SUFFIX}",
            }
            (out / f"{stem}{SIDECAR_SUFFIX}").write_text(
                json.dumps(meta, ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
            )
    except OSError as exc:
        _fail(f"cannot write to {out}: {exc}")
    console.print(f"exported {len(letters)} dead letters to {out}")


@rejects_app.command()
def replay(
    from_dir: Annotated[
        Path | None,
        typer.Option("--from", help="Replay the fixed files of an `export` directory instead."),
    ] = None,
    dead_letters: DeadLettersPath = None,
    reason: Reason = None,
    station: Station = None,
    since: Since = None,
    mqtt_host: MqttHost = "127.0.0.1",
    mqtt_port: MqttPort = 1883,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only print what would be published.")
    ] = False,
) -> None:
    """Publish dead-lettered messages again (QoS 1), oldest first."""
    if from_dir is not None:
        if reason or station or since:
            _fail("--reason/--station/--since select dead letters; not with --from")
        if not from_dir.is_dir():
            _fail(f"{from_dir} is not a directory")
        outgoing, skipped = from_directory(from_dir)
    else:
        outgoing, skipped = from_letters(_selected(dead_letters, reason, station, since))
    for line in skipped:
        console.print(f"skipped {line}", markup=False)
    if dry_run:
        for item in outgoing:
            console.print(
                f"would publish {item.source} → {item.topic} ({len(item.payload)} B)",
                markup=False,
            )
        console.print(f"dry run: {len(outgoing)} to publish, {len(skipped)} skipped")
        return
    from recording.publisher import BrokerUnreachableError, PublishError

    try:
        published = publish_all(outgoing, mqtt_host, mqtt_port)
    except PublishError as exc:
        _fail(str(exc), UNREACHABLE if isinstance(exc, BrokerUnreachableError) else FAILED)
    console.print(f"published {published}, skipped {len(skipped)}")
