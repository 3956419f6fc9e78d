"""`citysense demo` as a user runs it: up, cases appear, Ctrl-C leaves nothing behind."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from citysense.broker import free_port

pytestmark = pytest.mark.integration


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


def _wait_until_serving(url: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"{url}healthz", timeout=5):
                return
        except urllib.error.HTTPError as answer:
            answer.close()
            return  # answering (503 while the demo's services come up)
        except OSError:
            assert time.monotonic() < deadline, "the demo never served"
            time.sleep(0.2)


def _sign_in(url: str, user: str, password: str) -> str:
    """Sign in as the dashboard does; the session cookie, as a Cookie header."""
    body = json.dumps({"username": user, "password": password}).encode()
    request = urllib.request.Request(
        f"{url}api/v1/session", body, {"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert json.load(response)["role"] == "operator"
        cookie: str = response.headers["set-cookie"].split(";")[0]
    assert cookie.startswith("citysense_session=")
    return cookie


@pytest.mark.parametrize("broker", ["mosquitto", "embedded"])
def test_demo_opens_cases_and_ctrl_c_stops_every_process(broker: str, tmp_path: Path) -> None:
    port = free_port()
    demo = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "citysense.cli",
            "demo",
            "--port",
            str(port),
            "--incident-every",
            "4",
            "--data-dir",
            str(tmp_path),
            "--broker",
            broker,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"},
    )
    assert demo.stdout is not None
    try:
        url = password = ""
        head: list[str] = []
        while not url:
            line = demo.stdout.readline()
            head.append(line)
            assert line, "demo exited before printing the dashboard URL"
            if line.startswith("sign in as operator, password "):
                password = line.split("password ")[1].split()[0]
            if "dashboard:" in line:
                url = line.split("dashboard:")[1].split()[0]
        assert url == f"http://127.0.0.1:{port}/"
        assert len(password) >= 16, head
        children = _children(demo.pid)
        _wait_until_serving(url)
        with urllib.request.urlopen(url, timeout=5) as response:  # the page: no sign-in needed
            assert "text/html" in response.headers["content-type"]
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{url}api/v1/cases", timeout=5)  # its data: signed in only
        refused.value.close()
        assert refused.value.code == 401
        session = _sign_in(url, "operator", password)
        deadline = time.monotonic() + 90
        total = 0
        while time.monotonic() < deadline and not total:
            time.sleep(1)
            cases = urllib.request.Request(f"{url}api/v1/cases", headers={"Cookie": session})
            with urllib.request.urlopen(cases, timeout=5) as response:
                total = json.load(response)["total"]
        assert total >= 1
    finally:
        demo.send_signal(signal.SIGINT)
        rest, _ = demo.communicate(timeout=30)
        output = "".join(head) + rest
    assert demo.returncode == 0, output
    assert "demo stopped" in output
    assert f"broker: {'mosquitto' if broker == 'mosquitto' else 'embedded amqtt'}" in output
    if broker == "mosquitto":
        assert children, "the demo should have started a mosquitto broker"
    time.sleep(0.5)
    assert [pid for pid in children if _alive(pid)] == []


def test_demo_refuses_a_taken_port_with_a_clear_message() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "citysense.cli", "demo", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "COLUMNS": "200"},
            check=False,
        )
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert line.startswith("citysense demo: error: demo cannot start: ")
    assert f"127.0.0.1:{port} is taken" in line
