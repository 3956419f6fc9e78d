"""A tiny scripted HTTP server standing in for a store that refuses or throttles writes."""

from __future__ import annotations

import gzip
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Reply:
    status: int
    body: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    hold: threading.Event | None = None
    """Answer only once this is set (a store that is slow to accept)."""


@dataclass
class StubStore:
    """Answers each request with the next scripted reply (204 once the script is spent)."""

    url: str
    replies: list[Reply]
    bodies: list[bytes] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    encodings: list[str | None] = field(default_factory=list)


@contextmanager
def stub_store(*replies: Reply) -> Iterator[StubStore]:
    script = list(replies)
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            gzipped = self.headers.get("Content-Encoding") == "gzip"
            with lock:
                store.bodies.append(gzip.decompress(raw) if gzipped else raw)
                store.paths.append(self.path)
                store.encodings.append(self.headers.get("Content-Encoding"))
                reply = script.pop(0) if script else Reply(204)
            if reply.hold is not None:
                reply.hold.wait(10)
            body = reply.body.encode()
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    store = StubStore(f"http://127.0.0.1:{server.server_address[1]}", script)
    thread = threading.Thread(target=server.serve_forever, name="stub-store", daemon=True)
    thread.start()
    try:
        yield store
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
