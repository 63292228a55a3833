"""One moving deadline per key: order, moves, removal, and a heap that does not keep a trail."""

from __future__ import annotations

import random

from models.deadlines import SLACK, DeadlineQueue


def test_deadlines_come_out_in_order_each_at_its_latest_time() -> None:
    rng = random.Random(7)
    q = DeadlineQueue()
    latest: dict[str, int | None] = {}
    for _ in range(20_000):
        key, due = f"k{rng.randrange(300)}", rng.randrange(1_000_000)
        if rng.random() < 0.1:
            q.discard(key)
            latest[key] = None
        else:
            q.set(key, due)
            latest[key] = due
        assert q.entries <= 2 * len(q) + SLACK + 1
    want = sorted((d, k) for k, d in latest.items() if d is not None)
    assert len(q) == len(want)
    assert q.pop_due(want[0][0] - 1) is None  # nothing before the earliest
    got = []
    while (nxt := q.pop_due(10**9)) is not None:
        got.append(nxt)
    assert got == want and len(q) == 0


def test_set_to_none_takes_a_key_out_and_the_same_time_again_changes_nothing() -> None:
    q = DeadlineQueue()
    q.set("a", 5)
    q.set("a", 5)
    assert q.entries == 1 and "a" in q
    q.set("a", None)
    assert "a" not in q and q.pop_due(10) is None
