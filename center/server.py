"""A uvicorn server for the center that ends live streams when it is asked to stop, and lets
the node finish its own shutdown after a signal.

uvicorn waits for open connections before it stops, and an SSE stream never ends on its own:
with a dashboard open, a plain ``uvicorn.Server`` would wait forever (or until
``timeout_graceful_shutdown``). This one closes the broadcaster first, so streams finish.

uvicorn also raises the signal that stopped it again once it has stopped, with the previous
handler back: a SIGTERM (systemd's stop) then kills the process the moment ``serve`` returns,
before the node cancels its tasks, releases its delivery leases, saves ingest's checkpoint and
closes its stores. This one keeps the signal as uvicorn's reason to stop and does not raise it
again: the node stops the same way for SIGTERM and Ctrl-C, and exits 0.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import threading
from collections.abc import Iterator

import uvicorn

from center.broadcast import CaseBroadcaster

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class CenterServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, broadcaster: CaseBroadcaster) -> None:
        super().__init__(config)
        self.broadcaster = broadcaster

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.broadcaster.close()
        await super().shutdown(sockets=sockets)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """uvicorn's ``handle_exit`` on SIGINT and SIGTERM while serving, the previous handlers
        after, and no signal raised again."""
        if threading.current_thread() is not threading.main_thread():
            yield  # signals reach the main thread only
            return
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in STOP_SIGNALS}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
