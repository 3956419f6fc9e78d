"""Every refusal of the command line is one line on stderr, `citysense <command>: error: ...`,
with exit code 2 for a bad path, file, URL or option and 1 for a service that cannot be reached;
never a usage box, never a traceback. `--help` stays whole, and tables in a pipe are not
squeezed into 80 columns.

Most cases go through ``CliRunner`` (the app's root command prints the line, so the runner takes
the same path as the script); a few run the installed `citysense` script and `python -m
citysense` to check the real entry point.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from citysense.broker import free_port
from citysense.cli import app
from ingest.dead_letters import JsonlDeadLetters
from recording.format import Record, RecordingWriter

SCENARIO = Path(__file__).parents[1] / "scenarios" / "clock-reset.yaml"
SCRIPT = Path(sys.executable).with_name("citysense")
T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    """Paths of every kind the cases name (``{missing}``, ``{dir}``, ``{recording}``…) and
    ``{closed}``, a port nothing listens on."""
    recording = tmp_path / "run.csrec"
    with RecordingWriter(recording, {"source": "test"}) as writer:
        writer.write(Record(1_767_225_600 * 10**9, "citysense/v1/stations/st-1/telemetry", b"{}"))
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(SCENARIO.read_text(encoding="utf-8"), encoding="utf-8")
    (tmp_path / "adir").mkdir()
    (tmp_path / "a-file").write_text("not a directory\n", encoding="utf-8")
    (tmp_path / "config.toml").write_text("sample_interval_s = 1.0\n", encoding="utf-8")
    dead = tmp_path / "dead.jsonl"
    JsonlDeadLetters(dead).write("citysense/v1/stations/st-1/telemetry", b"{", "not_json", "", T0)
    paths = {
        "missing": tmp_path / "missing",
        "dir": tmp_path / "adir",
        "file": tmp_path / "a-file",
        "recording": recording,
        "scenario": scenario,
        "config": tmp_path / "config.toml",
        "dead": dead,
    }
    return {**{name: str(path) for name, path in paths.items()}, "closed": str(free_port())}


def _expand(args: list[str], files: dict[str, str]) -> list[str]:
    return [arg.format(**files) for arg in args]


def _invoke(args: list[str], env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, args, env=env)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"{args} raised {result.exception!r}") from result.exception
    return result.exit_code, result.stdout, result.stderr


def _assert_one_line(
    code: int, out: str, err: str, expected: int, command: str, names: str
) -> None:
    assert code == expected, out + err
    assert "Traceback" not in out + err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"{command}: error: "), lines[0]
    assert names in lines[0], lines[0]


BAD_INPUT = [
    # (arguments, the command it names, what the message must name)
    (["nosuchcmd"], "citysense", "nosuchcmd"),
    (["--bogus"], "citysense", "--bogus"),
    (["demo", "--bogus"], "citysense demo", "--bogus"),
    (["demo", "--port", "0"], "citysense demo", "--port"),
    (["demo", "--broker", "nope"], "citysense demo", "--broker"),
    (["demo", "--rules", "{missing}.yaml"], "citysense demo", "missing.yaml"),
    (["demo", "--data-dir", "{file}"], "citysense demo", "--data-dir"),
    (["serve", "--port", "70000"], "citysense serve", "--port"),
    (["serve", "--mqtt-host", "bad..host"], "citysense serve", "bad..host"),
    (["serve", "--rules", "{dir}"], "citysense serve", "adir"),
    (["edge", "--driver", "nope"], "citysense edge", "--driver"),
    (["edge", "st-1", "--mqtt-port", "70000"], "citysense edge", "--mqtt-port"),
    (["edge", "--config", "{missing}.toml"], "citysense edge", "missing.toml"),
    (["edge", "st-nowhere"], "citysense edge", "st-nowhere"),
    (["simulate"], "citysense simulate", "--live"),
    (["simulate", "{missing}.yaml"], "citysense simulate", "missing.yaml"),
    (["simulate", "{dir}"], "citysense simulate", "adir"),
    (["simulate", "{file}/x.yaml"], "citysense simulate", "a-file/x.yaml"),
    (["simulate", "{recording}"], "citysense simulate", "run.csrec is not a scenario"),
    (["simulate", "{scenario}", "--out", "{file}"], "citysense simulate", "--out"),
    (["record", "{dir}"], "citysense record", "adir"),
    (["record", "{missing}.csrec", "--mqtt-host", "a b"], "citysense record", "--mqtt-host"),
    (["record", "{missing}.csrec", "--mqtt-port", "0"], "citysense record", "--mqtt-port"),
    (["replay", "{missing}.csrec"], "citysense replay", "missing.csrec"),
    (["replay", "{scenario}", "--info"], "citysense replay", "not a citysense recording"),
    (["replay", "{recording}", "--mqtt-port", "70000"], "citysense replay", "--mqtt-port"),
    (["replay", "{recording}", "--qos", "5"], "citysense replay", "--qos"),
    (["backtest", "{missing}.csrec"], "citysense backtest", "missing.csrec"),
    (["backtest", "{scenario}"], "citysense backtest", "not a citysense recording"),
    (["score", "{missing}.truth.json"], "citysense score", "missing.truth.json"),
    (["score", "{scenario}"], "citysense score", "scenario.yaml"),
    (["lab", "run"], "citysense lab run", "Missing argument"),
    (["lab", "run", "{recording}"], "citysense lab run", "run.csrec is not a scenario"),
    (["lab", "run", "{scenario}", "--rules", "{recording}"], "citysense lab run", "--rules"),
    (["lab", "run", "{scenario}", "--jsn"], "citysense lab run", "--jsn"),
    (["rejects", "list", "--dead-letters", "{missing}.jsonl"], "citysense rejects list", "missing"),
    (["rejects", "list", "--dead-letters", "{dir}"], "citysense rejects list", "adir"),
    (
        ["rejects", "list", "--dead-letters", "{scenario}"],
        "citysense rejects list",
        "scenario.yaml",
    ),
    (
        ["rejects", "list", "--dead-letters", "{dead}", "--since", "x"],
        "citysense rejects list",
        "x",
    ),
    (["rejects", "replay", "--from", "{missing}"], "citysense rejects replay", "missing"),
    (["provision", "service", "nope"], "citysense provision service", "nope"),
    (["provision", "ca", "--dir", "{file}"], "citysense provision ca", "a-file"),
    (["provision", "station", "st-1", "--mqtt-port", "0"], "citysense provision station", "--mqtt"),
    (
        ["provision", "station", "st-1", "--broker-host", "a b"],
        "citysense provision station",
        "a b",
    ),
    (["config", "push", "st-1", "{missing}.toml"], "citysense config push", "missing.toml"),
    (["config", "push", "st-1", "{dir}"], "citysense config push", "adir"),
    (["config", "push", "st-1", "{scenario}"], "citysense config push", "not valid TOML"),
    (
        ["config", "push", "st-1", "{config}", "--config-version", "0"],
        "citysense config push",
        "--",
    ),
    (["rules", "check", "{missing}.yaml"], "citysense rules check", "missing.yaml"),
    (["rules", "explain", "eb-1.c1", "--api", "notaurl"], "citysense rules explain", "notaurl"),
    (
        ["rules", "explain", "eb-1.c1", "--api", "http://h:70000"],
        "citysense rules explain",
        "--api",
    ),
]


@pytest.mark.parametrize(("args", "command", "names"), BAD_INPUT)
def test_bad_input_is_one_line_and_exit_code_2(
    files: dict[str, str], args: list[str], command: str, names: str
) -> None:
    code, out, err = _invoke(_expand(args, files))
    _assert_one_line(code, out, err, 2, command, names)


UNREACHABLE = [
    (
        ["rejects", "replay", "--dead-letters", "{dead}", "--mqtt-port", "{closed}"],
        "citysense rejects replay",
    ),
    (
        ["rules", "explain", "eb-1.c1", "--api", "http://127.0.0.1:{closed}"],
        "citysense rules explain",
    ),
]


@pytest.mark.parametrize(("args", "command"), UNREACHABLE)
def test_a_service_that_cannot_be_reached_is_one_line_and_exit_code_2(
    files: dict[str, str], args: list[str], command: str
) -> None:
    """Nothing answers at the address an option names: that option is what is wrong."""
    code, out, err = _invoke(_expand(args, files))
    _assert_one_line(code, out, err, 2, command, f"127.0.0.1:{files['closed']}")


def test_a_broker_that_fails_mid_way_is_exit_code_1(files: dict[str, str]) -> None:
    """config push connects through aiomqtt, which does not tell a refused connection from a
    later failure: exit 1, one line."""
    args = ["config", "push", "st-1", "{config}", "--mqtt-port", "{closed}"]
    code, out, err = _invoke(_expand(args, files))
    _assert_one_line(code, out, err, 1, "citysense config push", f"127.0.0.1:{files['closed']}")


def test_score_without_a_center_is_one_line_and_exit_code_2(
    files: dict[str, str], tmp_path: Path
) -> None:
    code, out, err = _invoke(["simulate", str(SCENARIO), "--out", str(tmp_path / "runs")])
    assert code == 0, out + err
    truth = tmp_path / "runs" / "clock-reset.truth.json"
    api = f"http://127.0.0.1:{files['closed']}"
    code, out, err = _invoke(["score", str(truth), "--api", api])
    _assert_one_line(code, out, err, 2, "citysense score", api)


def test_the_settings_of_serve_are_named_by_their_variable() -> None:
    code, out, err = _invoke(["serve"], env={"CITYSENSE_CENTER_PORT": "eighty"})
    _assert_one_line(code, out, err, 2, "citysense serve", "CITYSENSE_CENTER_PORT")


def test_serve_refuses_a_port_in_use_before_anything_starts() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, out, err = _invoke(["serve", "--port", str(port)])
    _assert_one_line(code, out, err, 2, "citysense serve", f"127.0.0.1:{port}")


def _run(command: list[str], env: dict[str, str] | None = None) -> tuple[int, str, str]:
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        check=False,
    )
    return done.returncode, done.stdout, done.stderr


@pytest.mark.parametrize(
    ("entry", "args", "command", "names"),
    [
        ("script", ["nosuchcmd"], "citysense", "nosuchcmd"),
        ("script", ["demo", "--port", "70000"], "citysense demo", "--port"),
        ("script", ["simulate", "{recording}"], "citysense simulate", "not a scenario"),
        ("script", ["replay", "{scenario}"], "citysense replay", "not a citysense recording"),
        ("module", ["lab", "run", "{scenario}", "--jsn"], "citysense lab run", "--jsn"),
        (
            "module",
            ["rejects", "list", "--dead-letters", "{dir}"],
            "citysense rejects list",
            "adir",
        ),
    ],
)
def test_the_installed_entry_points_print_the_same_line(
    files: dict[str, str], entry: str, args: list[str], command: str, names: str
) -> None:
    prefix = [str(SCRIPT)] if entry == "script" else [sys.executable, "-m", "citysense"]
    code, out, err = _run([*prefix, *_expand(args, files)])
    _assert_one_line(code, out, err, 2, command, names)


def test_bad_settings_of_serve_through_the_script() -> None:
    code, out, err = _run([str(SCRIPT), "serve"], env={"CITYSENSE_CENTER_PORT": "eighty"})
    _assert_one_line(code, out, err, 2, "citysense serve", "CITYSENSE_CENTER_PORT")


def _commands() -> list[list[str]]:
    from typer.main import get_command

    root = get_command(app)
    found: list[list[str]] = [[]]
    for name, command in getattr(root, "commands", {}).items():
        found.append([name])
        found.extend([name, sub] for sub in getattr(command, "commands", {}))
    return found


@pytest.mark.parametrize("command", _commands(), ids=lambda c: " ".join(c) or "citysense")
def test_help_is_whole_and_shows_flags_as_flags(command: list[str]) -> None:
    code, out, err = _invoke([*command, "--help"], env={"COLUMNS": "200"})
    assert code == 0, err
    assert "Usage: citysense" in out
    assert "--help" in out
    assert "<bool>" not in out
    assert err == ""


def test_a_command_without_its_subcommand_shows_the_help() -> None:
    code, out, _ = _invoke(["lab"])
    assert code == 2
    assert "Usage: citysense lab" in out


def test_tables_in_a_pipe_are_not_squeezed_into_80_columns(files: dict[str, str]) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "FORCE_COLOR")}
    done = subprocess.run(
        [str(SCRIPT), "rejects", "list", "--dead-letters", files["dead"]],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    header = next(line for line in done.stdout.splitlines() if "received at" in line)
    for column in ("id", "kind", "reason", "station", "topic", "bytes", "detail"):
        assert column in header, done.stdout
    assert "citysense/v1/stations/st-1/telemetry" in done.stdout  # the topic in one piece
