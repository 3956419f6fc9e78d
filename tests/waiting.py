"""Waiting in async tests for something another task or process makes true."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def until(condition: Callable[[], object], within_s: float = 10.0) -> None:
    """Poll ``condition`` every 10 ms; ``AssertionError`` when it is still false after
    ``within_s``."""
    deadline = asyncio.get_running_loop().time() + within_s
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.01)
