"""Process-level tuning shared by the API and the dataflow processes."""

from __future__ import annotations

import gc


def tune_gc() -> None:
    """Make CPython's cyclic GC fit processes that allocate many short- and long-lived objects.

    With the default thresholds (700, 10, 10) a young collection runs every few hundred
    allocations and full collections rescan every live object: in the dataflow (millions of
    long-lived customer states) this halved the transition's throughput, and in the API it
    took 16% of the CPU of ingest. Our objects hold no reference cycles worth collecting
    early, so collecting rarely loses nothing. Call once, at process start.

    The young generation is collected every 10,000 net allocations: a young collection
    stops the process for a time proportional to the objects it examines, and at 50,000 the
    dataflow stalled 15 - 26 ms every ~2 s under 5,000 events/s, which was most of the p99
    of ingest -> profile visible (`bench.freshness`: p99 ~50 -> ~30 ms at 10,000, for ~4%
    less throughput, within the noise). The middle generation still waits for the same
    2.5 M allocations (10,000 x 250) as before.
    """
    gc.collect()
    gc.freeze()  # what exists at start (modules, settings) is never collected
    gc.set_threshold(10_000, 250, 100)
