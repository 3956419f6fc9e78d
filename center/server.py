"""A uvicorn server for the center that ends live streams when it is asked to stop.

uvicorn waits for open connections before it stops, and an SSE stream never ends on its own:
with a dashboard open, a plain ``uvicorn.Server`` would wait forever (or until
``timeout_graceful_shutdown``). This one closes the broadcaster first, so streams finish.
"""

from __future__ import annotations

import socket

import uvicorn

from center.broadcast import CaseBroadcaster


class CenterServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, broadcaster: CaseBroadcaster) -> None:
        super().__init__(config)
        self.broadcaster = broadcaster

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.broadcaster.close()
        await super().shutdown(sockets=sockets)
