"""The node's garbage collector settings: young collections far less often, the older
generations at Python's ratios to them."""

from __future__ import annotations

import gc

from node.collector import YOUNG_THRESHOLD, tune_collector


def test_the_young_generation_is_collected_every_young_threshold_allocations() -> None:
    before = gc.get_threshold()
    try:
        gc.set_threshold(700, 10, 10)
        tune_collector()
        assert gc.get_threshold() == (YOUNG_THRESHOLD, 10, 10)
        tune_collector()  # once or twice alike
        assert gc.get_threshold() == (YOUNG_THRESHOLD, 10, 10)
    finally:
        gc.set_threshold(*before)
