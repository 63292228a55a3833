"""A queue of one moving deadline per key (pure; the trigger timers and the served decisions
awaiting an outcome keep their customers' next deadlines in one each).

A deadline moved again and again (every cart change moves an abandoned-cart timer) does not
leave a trail: the heap keeps the superseded entries only until they outnumber the live ones
past a slack, then it is rebuilt from the live ones, so its size follows the keys queued,
not the moves (amortised O(1) per move).

>>> q = DeadlineQueue()
>>> q.set("u1", 50); q.set("u2", 20); q.set("u1", 10)  # u1 moved: its 50 is superseded
>>> q.pop_due(30), q.pop_due(30), q.pop_due(30)
((10, 'u1'), (20, 'u2'), None)
"""

from __future__ import annotations

import heapq
from typing import Final

SLACK: Final = 1_024  # superseded entries the heap may hold past twice the live ones


class DeadlineQueue:
    __slots__ = ("_due", "_heap")

    def __init__(self) -> None:
        self._heap: list[tuple[int, str]] = []  # (deadline, key), live and superseded
        self._due: dict[str, int] = {}  # key -> its live deadline

    def __len__(self) -> int:
        return len(self._due)

    def __contains__(self, key: str) -> bool:
        return key in self._due

    @property
    def entries(self) -> int:
        """Entries in the heap, superseded ones included (at most twice the live ones + `SLACK`)."""
        return len(self._heap)

    def set(self, key: str, due: int | None) -> None:
        """Queue `key` for `due`, moving its deadline if it had one (None: take it out)."""
        if due is None:
            self._due.pop(key, None)
            return
        if self._due.get(key) == due:
            return
        self._due[key] = due
        heap = self._heap
        heapq.heappush(heap, (due, key))
        if len(heap) > 2 * len(self._due) + SLACK:
            self._heap = [(d, k) for k, d in self._due.items()]
            heapq.heapify(self._heap)

    def discard(self, key: str) -> None:
        self._due.pop(key, None)

    def pop_due(self, until: int) -> tuple[int, str] | None:
        """The earliest live deadline at or before `until`, taken out of the queue, with its
        key; None if there is none."""
        heap, live = self._heap, self._due
        while heap and heap[0][0] <= until:
            due, key = heapq.heappop(heap)
            if live.get(key) == due:
                del live[key]
                return due, key
        return None
