"""The garbage collector, set for a worker whose batches must not stall for long.

With CPython's defaults (a young collection every 700 allocations) the objects a batch keeps
for a few tens of milliseconds (its records, its messages until the broker acknowledges them)
outlive two young collections and reach the oldest generation, which then fills by a quarter
every few seconds: a full collection of the whole heap followed, 120-270 ms with every thread
stopped (bench/latency.py, a traced run: 15 in a minute). So, once the worker is up: what
start-up built (modules, Faust, the model) is frozen out of the collector's sight, and young
collections run after many more allocations, so that a batch's short-lived objects die
before one looks at them. Reference counting still frees everything that is not in a cycle.
"""

from __future__ import annotations

import gc

# Allocations (less deallocations) between young collections, and young collections between
# middle ones; the oldest's threshold is CPython's (it also waits for its 25% rule).
YOUNG = 50_000
MIDDLE = 20


def settle() -> None:
    """Freeze what exists now and set the thresholds; call once start-up is done."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG, MIDDLE, gc.get_threshold()[2])
