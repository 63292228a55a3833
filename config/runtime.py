"""Process-level tuning shared by the API and the dataflow processes."""

from __future__ import annotations

import gc

API_YOUNG = 50_000  # allocations between young collections in the API
DATAFLOW_YOUNG = 10_000  # ... and in the dataflow


def tune_gc(young: int = API_YOUNG) -> None:
    """Make CPython's cyclic GC fit processes that allocate many short- and long-lived objects.

    With the default thresholds (700, 10, 10) a young collection runs every few hundred
    allocations and full collections rescan every live object: in the dataflow (millions of
    long-lived customer states) this halved the transition's throughput, and in the API it
    took 16% of the CPU of ingest. Our objects hold no reference cycles worth collecting
    early, so collecting rarely loses nothing. Call once, at process start.

    A young collection stops the process for a time proportional to the objects it examines,
    so `young` trades how often against how long. The API answers in ~1 ms: rare pauses
    (every 50,000 allocations) touch fewer requests (`bench.decide`, 2,000/s: p99 2.8 ms at
    50,000 against 3.9 ms at 10,000). The dataflow's budget is tens of milliseconds: at
    50,000 it stalled 15 - 26 ms every ~2 s under 5,000 events/s, most of the p99 of ingest ->
    profile visible (`bench.freshness`: ~50 -> ~30 ms at 10,000, for throughput within the
    noise). The middle generation waits for 2.5 M allocations either way.
    """
    gc.collect()
    gc.freeze()  # what exists at start (modules, settings) is never collected
    gc.set_threshold(young, 2_500_000 // young, 100)
