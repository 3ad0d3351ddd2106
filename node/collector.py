"""The node process's settings of Python's garbage collector."""

from __future__ import annotations

import gc
from typing import Final

YOUNG_THRESHOLD: Final = 20_000
"""Container objects allocated (net of those freed) between two collections of the youngest
generation; Python's default is 700. Executing and storing a block allocates and frees many
small containers (overlays, events, decoded trie nodes), nearly all freed by reference counting
the moment they are done with, so the collector mostly scans objects that are alive. Importing
10,000 transfers in blocks of 2,000 (`bench.block_import`), the default ran 457 young, 41 middle
and 3 full collections, 7-9 % of the import's time (the full ones about 40 ms each, as they
scan the trie's node cache and everything else alive); at 20,000, 10 young collections and no
other, 2-3 %. What waits longer to be found is only garbage in reference cycles, which the
node makes little of."""


def tune_collector() -> None:
    """Collect young objects every YOUNG_THRESHOLD allocations instead of every 700; the older
    generations keep Python's ratios (one middle collection per 10 young, one full per 10
    middle), so they too run 28 times less often."""
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
