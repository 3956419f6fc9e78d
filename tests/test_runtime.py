"""The node's runtime tuning (citysense/runtime.py)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from citysense.runtime import GC_THRESHOLDS, tune_gc


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
