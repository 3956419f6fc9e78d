"""`citysense record` and `citysense replay`: capture MQTT traffic into a recording, play it back.

Registered by ``citysense.cli``; heavy imports stay inside the commands so ``--help`` is fast.
Bad input (a missing file, not a recording, a speed out of range) ends with one line on stderr
(``citysense replay: error: ...``) and exit code 2; a broker that cannot be reached or fails
mid-way with one line and exit code 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from citysense.cli_common import (
    UNREACHABLE,
    MqttHost,
    MqttPort,
    Verbose,
    configure_logging,
    console,
    fail,
)

if TYPE_CHECKING:
    from recording.capture import CaptureStats
    from recording.format import Record, RecordingSummary
    from recording.replay import ReplayStats

BAD_INPUT = 2
FAILED = 1
MAX_SPEED = 1000.0
TOPIC_GROUPS_SHOWN = 12


def _fail(message: str, code: int = BAD_INPUT) -> NoReturn:
    fail(message, code)


def record(
    out: Annotated[
        Path, typer.Argument(dir_okay=False, help="Recording to write, e.g. traffic.csrec.")
    ],
    mqtt_host: MqttHost = "127.0.0.1",
    mqtt_port: MqttPort = 1883,
    topic: Annotated[
        list[str] | None,
        typer.Option(help="Topic filter to capture, repeat for several (default citysense/#)."),
    ] = None,
    duration: Annotated[
        float | None, typer.Option(help="Stop after this many seconds (default: at Ctrl-C).")
    ] = None,
    max_records: Annotated[
        int | None, typer.Option(help="Stop after this many messages (default: no limit).")
    ] = None,
    append: Annotated[
        bool,
        typer.Option("--append", help="Continue an existing recording (a torn tail is cut off)."),
    ] = False,
    verbose: Verbose = False,
) -> None:
    """Capture live MQTT traffic from any broker into a recording (Ctrl-C stops cleanly).

    Example, one minute of a city's traffic:

        citysense record city.csrec --mqtt-host 127.0.0.1 --mqtt-port 1883 --duration 60
    """
    from recording.capture import DEFAULT_TOPICS, CaptureError, capture, check_topic_filter
    from recording.format import RecordingError

    configure_logging(verbose)
    topics = tuple(topic or DEFAULT_TOPICS)
    for topic_filter in topics:
        try:
            check_topic_filter(topic_filter)
        except ValueError as exc:
            _fail(str(exc))
    if duration is not None and duration <= 0:
        _fail(f"--duration must be positive, not {duration:g}")
    if max_records is not None and max_records <= 0:
        _fail(f"--max-records must be positive, not {max_records}")
    resuming = append and out.exists() and out.stat().st_size > 0
    if out.exists() and not append:
        _fail(f"{out} exists; pass --append to continue it or choose another file")
    metadata = None if resuming else _capture_metadata(mqtt_host, mqtt_port, topics)

    async def main() -> CaptureStats:
        stop = asyncio.Event()
        with _stop_on_signals(stop):
            return await capture(
                out,
                host=mqtt_host,
                port=mqtt_port,
                topics=topics,
                duration=duration,
                max_records=max_records,
                metadata=metadata,
                append=append,
                stop=stop,
            )

    try:
        stats = asyncio.run(main())
    except RecordingError as exc:
        _fail(str(exc))
    except CaptureError as exc:
        _fail(str(exc), UNREACHABLE if exc.unreachable else FAILED)
    _print_capture(out, stats)


def _print_capture(out: Path, stats: CaptureStats) -> None:
    console.print(
        f"captured {stats.records} messages ({stats.bytes:,} payload bytes) in "
        f"{stats.wall_seconds:.1f} s over {stats.protocol} into {out}",
        soft_wrap=True,
    )
    if stats.reconnects:
        console.print(f"the broker connection was lost {stats.reconnects} times: gaps possible")
    if stats.repaired_bytes:
        console.print(f"cut a torn tail of {stats.repaired_bytes} bytes before appending")


def _capture_metadata(host: str, port: int, topics: tuple[str, ...]) -> dict[str, object]:
    started = datetime.now(UTC).isoformat(timespec="seconds")
    return {
        "source": "capture",
        "broker": f"{host}:{port}",
        "topics": list(topics),
        "captured_at": started,
    }


@contextlib.contextmanager
def _stop_on_signals(stop: asyncio.Event) -> Iterator[None]:
    """SIGINT and SIGTERM end the capture normally, so the recording is closed and summed up."""
    loop = asyncio.get_running_loop()
    handled = (signal.SIGINT, signal.SIGTERM)
    for signum in handled:
        loop.add_signal_handler(signum, stop.set)
    try:
        yield
    finally:
        for signum in handled:
            loop.remove_signal_handler(signum)


def replay(
    recording: Annotated[Path, typer.Argument(help="Recording to replay (.csrec).")],
    mqtt_host: MqttHost = "127.0.0.1",
    mqtt_port: MqttPort = 1883,
    speed: Annotated[
        float | None,
        typer.Option(help="Time scale, 0 < speed <= 1000 (default 1): 10 is ten times faster."),
    ] = None,
    as_fast_as_possible: Annotated[
        bool,
        typer.Option(
            "--as-fast-as-possible", help="Ignore the recorded timing and publish at full rate."
        ),
    ] = False,
    qos: Annotated[
        int | None,
        typer.Option(
            min=0,
            max=2,
            help="Publish every message with this QoS (0, 1 or 2; default: as recorded).",
        ),
    ] = None,
    info: Annotated[
        bool,
        typer.Option("--info", help="Only describe the recording; do not connect to a broker."),
    ] = False,
    run_id: Annotated[
        str | None,
        typer.Option(
            help="Replay as a run of its own: every station and sensor id becomes "
            "<run id>-<id>, so the run cannot mix with a demo or an earlier run; score it with "
            "citysense score --run-id. A new id per run (1-24 letters, digits, _ or -)."
        ),
    ] = None,
    run_file: Annotated[
        Path | None,
        typer.Option(
            help="With --run-id: where the run record goes (default: beside the recording, "
            "<name>.<run id>.run.json, where citysense score --run-id looks for it)."
        ),
    ] = None,
    verbose: Verbose = False,
) -> None:
    """Replay a recording into a broker with its original timing, scaled by --speed.

    Example, a recorded hour in six minutes, then what a recording holds:

        citysense replay city.csrec --mqtt-host 127.0.0.1 --mqtt-port 1883 --speed 10

        citysense replay city.csrec --info

    A scenario run into a system that runs other traffic (make demo), scored on its own:

        citysense replay runs/cover-open.csrec --speed 100 --run-id lab1

        citysense score runs/cover-open.truth.json --run-id lab1
    """
    from recording.format import RecordingError, summarize

    configure_logging(verbose)
    if speed is not None and as_fast_as_possible:
        _fail("choose either --speed or --as-fast-as-possible")
    if speed is not None and not 0 < speed <= MAX_SPEED:
        _fail(f"--speed must be in (0, {MAX_SPEED:g}], not {speed:g}")
    if qos is not None and qos not in (0, 1, 2):
        _fail(f"--qos must be 0, 1 or 2, not {qos}")
    if run_file is not None and run_id is None:
        _fail("--run-file goes with --run-id")
    try:
        summary = summarize(recording)
    except RecordingError as exc:
        _fail(str(exc))
    if info:
        _print_info(recording, summary)
        return
    scale = None if as_fast_as_possible else (speed or 1.0)
    if run_id is not None:
        _replay_run(recording, summary, run_id, run_file, mqtt_host, mqtt_port, scale, qos)
        return
    stats = _replay_with_progress(recording, summary.records, mqtt_host, mqtt_port, scale, qos)
    _print_replay(stats)


def _replay_run(
    recording: Path,
    summary: RecordingSummary,
    run_id: str,
    run_file: Path | None,
    host: str,
    port: int,
    speed: float | None,
    qos: int | None,
) -> None:
    """``replay --run-id``: refuse a run id this recording or broker has seen, write the run
    record, replay under the run's ids, and complete the record."""
    from recording.replay import ReplayError
    from recording.runs import (
        RunPrefix,
        RunRecord,
        RunScopeError,
        recorded_stations,
        retained_births,
        run_record_path,
    )

    try:
        prefix = RunPrefix(run_id)
        stations = {sid: prefix.station(sid) for sid in recorded_stations(summary.topics)}
    except RunScopeError as exc:
        _fail(str(exc))
    if not stations:
        _fail(f"{recording} has no station topics: nothing to replay as a run")
    path = run_file or run_record_path(recording.parent, recording.stem, run_id)
    if path.exists():
        _fail(f"run {run_id} was replayed before ({path} exists): choose another --run-id")
    try:
        used = asyncio.run(retained_births(host, port, stations.values()))
    except ReplayError as exc:
        _fail(str(exc), UNREACHABLE)  # it only connects, subscribes and reads
    if used:
        _fail(
            f"run id {run_id} was replayed into this broker before (it holds the birth of "
            f"{used[0]}): a center that saw it would drop the batches again as duplicates; "
            "choose another --run-id"
        )
    run = RunRecord(
        run_id=run_id,
        recording=str(recording.resolve()),
        metadata=dict(summary.metadata),
        broker=f"{host}:{port}",
        speed=speed,
        started_at=datetime.now(UTC),
        stations=stations,
    )
    try:
        run.write(path)
    except OSError as exc:
        _fail(f"cannot write the run record {path}: {exc}")
    shown = ", ".join(f"{a} -> {b}" for a, b in list(stations.items())[:3])
    more = f" and {len(stations) - 3} more" if len(stations) > 3 else ""
    console.print(
        f"run {run_id}: {len(stations)} stations renamed ({shown}{more}); run record {path}",
        soft_wrap=True,
    )
    stats = _replay_with_progress(
        recording, summary.records, host, port, speed, qos, transform=prefix.record
    )
    run = replace(
        run, finished_at=datetime.now(UTC), published=stats.records, skipped=stats.skipped
    )
    run.write(path)
    _print_replay(stats)
    if stats.skipped:
        console.print(f"left out {stats.skipped} messages on topics outside the stations")


def _replay_with_progress(
    recording: Path,
    total: int,
    host: str,
    port: int,
    speed: float | None,
    qos: int | None,
    *,
    transform: Callable[[Record], Record | None] | None = None,
) -> ReplayStats:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from recording.publisher import BrokerUnreachableError
    from recording.replay import ReplayError
    from recording.replay import replay as replay_recording

    columns = (
        TextColumn("replaying"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:>8.0f} msg/s"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console) as bar:
        task = bar.add_task("replay", total=total, rate=0.0)

        def advance(done: int, _total: int) -> None:
            elapsed = bar.tasks[0].elapsed or 0.0
            bar.update(task, completed=done, rate=done / elapsed if elapsed > 0 else 0.0)

        try:
            return asyncio.run(
                replay_recording(
                    recording,
                    host=host,
                    port=port,
                    speed=speed,
                    qos_override=qos,
                    progress=advance,
                    total_records=total,
                    transform=transform,
                )
            )
        except ReplayError as exc:
            bar.stop()
            _fail(str(exc), UNREACHABLE if isinstance(exc, BrokerUnreachableError) else FAILED)
        except KeyboardInterrupt:
            bar.stop()
            _fail("interrupted", 130)


def _print_replay(stats: ReplayStats) -> None:
    console.print(
        f"replayed {stats.records} messages ({stats.bytes:,} payload bytes, "
        f"{stats.span_seconds:.1f} s of publish time) in {stats.wall_seconds:.2f} s: "
        f"{stats.messages_per_second:,.0f} msg/s",
        soft_wrap=True,
    )
    if stats.late_records:
        console.print(
            f"{stats.late_records} messages went out late, "
            f"at most {stats.late_records_max_lag_s:.3f} s behind the recorded timing"
        )
    if stats.truncated_bytes:
        console.print(f"ignored a torn tail of {stats.truncated_bytes} bytes")


def _print_info(recording: Path, summary: RecordingSummary) -> None:
    from rich.table import Table

    console.print(f"[bold]{recording}[/]: citysense recording", soft_wrap=True)
    for key, value in sorted(summary.metadata.items()):
        console.print(f"  {key}: {value}", soft_wrap=True)
    console.print(
        f"{summary.records} messages, {summary.payload_bytes:,} payload bytes, "
        f"{summary.retained} retained, {_topic_count(summary.topics)}"
    )
    if summary.earliest_t_ns is not None and summary.latest_t_ns is not None:
        first, last = (_iso(t) for t in (summary.earliest_t_ns, summary.latest_t_ns))
        console.print(
            f"publish time {first} … {last} ({summary.span_seconds:.3f} s)", soft_wrap=True
        )
    if summary.truncated_bytes:
        console.print(f"torn tail: {summary.truncated_bytes} bytes at the end are not a record")
    table = Table("topics", "messages")
    groups = _topic_groups(summary.topics)
    for pattern, count in groups[:TOPIC_GROUPS_SHOWN]:
        table.add_row(pattern, str(count))
    if len(groups) > TOPIC_GROUPS_SHOWN:
        rest = sum(count for _, count in groups[TOPIC_GROUPS_SHOWN:])
        table.add_row(f"… {len(groups) - TOPIC_GROUPS_SHOWN} more", str(rest))
    if groups:
        console.print(table)


def _topic_count(topics: dict[str, int]) -> str:
    """``4 topics in 2 patterns``: the table below lists the patterns."""
    patterns = len(_topic_groups(topics))
    many = "s" if len(topics) != 1 else ""
    if patterns == len(topics):
        return f"{len(topics)} topic{many}"
    return f"{len(topics)} topic{many} in {patterns} pattern{'s' if patterns != 1 else ''}"


def _topic_groups(topics: dict[str, int]) -> list[tuple[str, int]]:
    """Station topics folded into one row per channel (``…/stations/+/telemetry``)."""
    from protocol.topics import StationTopic, TopicError

    groups: dict[str, int] = {}
    for topic, count in topics.items():
        try:
            pattern = StationTopic.subscription(StationTopic.parse(topic).channel)
        except TopicError:
            pattern = topic
        groups[pattern] = groups.get(pattern, 0) + count
    return sorted(groups.items(), key=lambda item: (-item[1], item[0]))


def _iso(t_ns: int) -> str:
    from recording.format import Record

    return Record(t_ns, "", b"").ts.isoformat()
