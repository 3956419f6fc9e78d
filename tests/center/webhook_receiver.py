"""A webhook receiver for the tests: ``http.server`` on a loopback port, in a thread, checking
every delivery's signature as a real receiver would (``center.delivery.signing.verify``)."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType

from center.delivery.signing import SignatureError, verify
from citysense.broker import free_port


@dataclass(frozen=True, slots=True)
class Delivery:
    webhook_id: str
    event: dict[str, object]
    verified: bool


Answer = Callable[[int], tuple[int, dict[str, str]]]
"""Event id → (status, extra headers) to answer with."""


def accept(_event_id: int) -> tuple[int, dict[str, str]]:
    return 200, {}


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        """A sender that gave up waiting closed the connection: not the receiver's problem."""


class WebhookReceiver:
    """Start it to be up, stop it to be down (connection refused on its port)."""

    def __init__(self, secret: str, port: int | None = None) -> None:
        self.secret = secret
        self.port = port or free_port()
        self.answer: Answer = accept
        self.delay_s: Callable[[int], float] = lambda _event_id: 0.0
        self.deliveries: list[Delivery] = []
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/citysense"

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> WebhookReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                try:
                    verify(receiver.secret, dict(self.headers.items()), body, now=time.time())
                    verified = True
                except SignatureError:
                    verified = False
                event = json.loads(body)
                event_id = int(event["id"])
                with receiver._lock:
                    receiver.deliveries.append(
                        Delivery(self.headers["webhook-id"], event, verified)
                    )
                time.sleep(receiver.delay_s(event_id))
                status, headers = receiver.answer(event_id)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = _Server(("127.0.0.1", self.port), Handler)
        server = self._server
        self._thread = threading.Thread(target=lambda: server.serve_forever(0.05), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def ids(self) -> list[int]:
        """Event ids in the order they arrived, duplicates included."""
        with self._lock:
            return [int(d.webhook_id) for d in self.deliveries]

    def duplicates(self) -> int:
        return sum(n - 1 for n in Counter(self.ids()).values())

    def all_verified(self) -> bool:
        with self._lock:
            return all(d.verified for d in self.deliveries)

    def __enter__(self) -> WebhookReceiver:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
