"""stream_app.heap: the collector as the worker sets it once started."""

from __future__ import annotations

import gc

from stream_app import heap


def test_settle_freezes_what_exists_and_spaces_the_young_collections() -> None:
    before = gc.get_threshold()
    try:
        heap.settle()
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == (heap.YOUNG, heap.MIDDLE, before[2])
        assert gc.get_count()[0] < heap.YOUNG
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
