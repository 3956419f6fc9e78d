"""The node's runtime tuning (citysense/runtime.py)."""

from __future__ import annotations

import asyncio
import gc
import sys
import weakref
from collections.abc import Iterator

import pytest

from citysense.runtime import GC_THRESHOLDS, SWITCH_INTERVAL_S, keep_frozen, tune, tune_gc
from tests.waiting import until


@pytest.fixture
def _restored_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("_restored_gc")
def test_tuning_freezes_what_is_alive_and_makes_collections_rarer() -> None:
    tune_gc()
    assert gc.get_threshold() == GC_THRESHOLDS
    assert gc.get_freeze_count() > 0
    cycle: list[object] = []
    cycle.append(cycle)
    del cycle
    assert gc.collect() >= 1  # cycles made afterwards are still collected


@pytest.mark.usefixtures("_restored_gc")
def test_a_tuned_node_hands_the_gil_to_a_waiting_thread_sooner() -> None:
    default = sys.getswitchinterval()
    try:
        tune()
        assert sys.getswitchinterval() == pytest.approx(SWITCH_INTERVAL_S)
        assert default > SWITCH_INTERVAL_S
        assert gc.get_threshold() == GC_THRESHOLDS
    finally:
        sys.setswitchinterval(default)


class _Node:
    """An object in a reference cycle, weakly referenceable."""

    def __init__(self) -> None:
        self.me = self


@pytest.mark.usefixtures("_restored_gc")
async def test_survivors_are_frozen_and_the_sweep_frees_cycles_among_them() -> None:
    now = [0.0]
    kept = _Node()
    alive = weakref.ref(kept)
    frozen_before = gc.get_freeze_count()
    task = asyncio.create_task(keep_frozen(every_s=0.01, sweep_every_s=60, clock=lambda: now[0]))
    try:
        await until(lambda: gc.get_freeze_count() > frozen_before)
        await asyncio.sleep(0.05)  # another freeze or two
        del kept  # garbage now, but frozen: a full collection does not see it
        gc.collect()
        assert alive() is not None
        now[0] = 61.0  # the sweep is due
        await until(lambda: alive() is None)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
