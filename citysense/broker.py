"""Start an MQTT broker for the demo and the tests.

Mosquitto runs from the project's own ``broker_config/`` with the listener on a loopback port
chosen here; when the binary is missing (a bare laptop), the demo falls back to an embedded
amqtt broker.
"""

from __future__ import annotations

import ctypes
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

PR_SET_PDEATHSIG = 1
BROKER_CONFIG_DIR = Path(__file__).resolve().parent.parent / "broker_config"


class BrokerError(RuntimeError):
    """The broker could not be started."""


def _die_with_parent() -> None:
    if sys.platform == "linux":
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(host: str, port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError as exc:
            if time.monotonic() > deadline:
                raise BrokerError(f"nothing listens on {host}:{port} after {timeout}s") from exc
            time.sleep(0.05)


@dataclass
class MosquittoBroker:
    """A private ``mosquitto`` process; use as a context manager."""

    config: Path = BROKER_CONFIG_DIR / "dev.conf"
    host: str = "127.0.0.1"
    port: int = 0
    listen: bool = True
    """Prepend ``listener <port> <host>``; False: the config declares its own listeners
    (``port`` must then be one of them: start() waits for it)."""
    _process: subprocess.Popen[bytes] | None = None
    _workdir: tempfile.TemporaryDirectory[str] | None = None

    @staticmethod
    def available() -> bool:
        return shutil.which("mosquitto") is not None

    def start(self) -> MosquittoBroker:
        binary = shutil.which("mosquitto")
        if binary is None:
            raise BrokerError("mosquitto is not on PATH (Debian: apt-get install mosquitto)")
        if not self.port:
            if not self.listen:
                raise BrokerError(f"{self.config} has its own listeners: say which port to wait on")
            self.port = free_port(self.host)
        self._workdir = tempfile.TemporaryDirectory(prefix="citysense-mosquitto-")
        conf = Path(self._workdir.name) / "mosquitto.conf"
        listener = f"listener {self.port} {self.host}\n" if self.listen else ""
        conf.write_text(f"{listener}{self.config.read_text()}")
        log = (Path(self._workdir.name) / "mosquitto.log").open("wb")
        # Own session: Ctrl-C in the terminal reaches the demo, which stops the broker last,
        # after its clients said goodbye. The parent-death signal stops it if we are killed.
        self._process = subprocess.Popen(
            [binary, "-c", str(conf)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        log.close()
        try:
            wait_for_port(self.host, self.port)
        except BrokerError as exc:
            output = (Path(self._workdir.name) / "mosquitto.log").read_text(errors="replace")
            self.stop()
            raise BrokerError(f"{exc}; mosquitto said: {output[-2000:]}") from None
        return self

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir = None

    def kill(self) -> None:
        """SIGKILL, as a crash or power cut would: no final persistence save."""
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None
        self.stop()

    def signal(self, signum: int) -> None:
        """Send the broker a signal (tests: SIGSTOP/SIGCONT to hold its acknowledgements)."""
        if self._process is None:
            raise BrokerError("the broker is not running")
        self._process.send_signal(signum)

    def log(self) -> str:
        """What the running broker has written to its log so far."""
        if self._workdir is None:
            return ""
        return (Path(self._workdir.name) / "mosquitto.log").read_text(errors="replace")

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def __enter__(self) -> MosquittoBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
