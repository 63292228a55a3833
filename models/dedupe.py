"""Compact, bounded de-duplication of messageIds, per customer (pure; used by
`models.customer`).

A customer's recently received messageIds are kept as 8-byte hashes appended in arrival order
to one `bytearray`: 8 bytes per event, where a ``dict[int, int]`` entry costs about 110 in
the process and 18 in a msgpack snapshot, and a snapshot packs the array as one binary
string. `marks` groups the array into a few arrival-time buckets, as flat triples
``[first received, last received, end offset in bytes, …]``, oldest first; a bucket spans
at most ``window / BUCKETS`` of arrival time. A bucket is dropped whole once its last arrival
is older than the window, so an id is remembered for at least the window and at most a
bucket longer. A customer never keeps more than `max_ids` ids: past that the oldest go
first (a client that sends thousands of events a day under one id is a robot, and its
memory stays bounded).

Lookups are `bytearray.find` (C, memchr-fast), checked for 8-byte alignment.

>>> seen, marks = bytearray(), []
>>> k = key_of(b"m1")
>>> seen_before(seen, marks, k, horizon=0)
False
>>> remember(seen, marks, k, received=1_000, horizon=0, window_ms=60_000, max_ids=100)
>>> seen_before(seen, marks, k, horizon=0), marks
(True, [1000, 1000, 8])
>>> seen_before(seen, marks, k, horizon=1_001)  # its bucket is older than the window
False
"""

from __future__ import annotations

import struct
import zlib
from typing import Final

BUCKETS: Final = 8  # arrival-time buckets per window: an id may outlive the window by 1/8
_PAIR: Final = struct.Struct("<II")


def hash_of(message_id: bytes) -> int:
    """The stable 64-bit messageId hash (`models.customer.message_hash`)."""
    return (zlib.adler32(message_id) << 32) | zlib.crc32(message_id)


def key_of(message_id: bytes) -> bytes:
    """`hash_of` as the 8 little-endian bytes `seen` stores."""
    return _PAIR.pack(zlib.crc32(message_id), zlib.adler32(message_id))


def seen_before(seen: bytearray, marks: list[int], key: bytes, horizon: int) -> bool:
    """Whether `key` is in a bucket of `seen` whose last arrival is not before `horizon`
    (buckets past it count as gone, pruned or not yet)."""
    start = _expired(marks, horizon)[1] if marks and marks[1] < horizon else 0
    return contains(seen, key, start)


def _expired(marks: list[int], horizon: int) -> tuple[int, int]:
    """How many mark entries and bytes of `seen` the buckets older than `horizon` hold."""
    k = end = 0
    while k < len(marks) and marks[k + 1] < horizon:
        end = marks[k + 2]
        k += 3
    return k, end


def contains(seen: bytearray, key: bytes, start: int = 0) -> bool:
    """Whether `key` is one of the 8-byte entries of `seen` from byte `start` (a multiple of
    8) on."""
    i = seen.find(key, start)
    while i >= 0:
        if not i & 7:
            return True
        i = seen.find(key, i + 1)  # a match straddling two entries: look further
    return False


def remember(
    seen: bytearray,
    marks: list[int],
    key: bytes,
    received: int,
    horizon: int,
    window_ms: int,
    max_ids: int,
) -> None:
    """Append `key`, received at `received`; then forget the buckets whose last arrival is
    before `horizon` (the latest arrival of the customer minus the window) and the oldest
    ids past `max_ids`. Both are updated in place."""
    seen += key
    if marks and received - marks[-3] < max(1, window_ms // BUCKETS):
        if received > marks[-2]:
            marks[-2] = received
        marks[-1] = len(seen)
    else:
        marks += (received, received, len(seen))
    if marks[1] < horizon or len(seen) > 8 * max_ids:
        prune(seen, marks, horizon, max_ids)


def prune(seen: bytearray, marks: list[int], horizon: int, max_ids: int) -> None:
    """Forget the buckets whose last arrival is before `horizon`, then, past `max_ids`, the
    oldest ids down to ¾ of it (so a customer at the cap does not shift its array on every
    event)."""
    k, drop = _expired(marks, horizon)
    if len(seen) - drop > 8 * max_ids:
        drop = len(seen) - 8 * (max_ids * 3 // 4)
        while k < len(marks) and marks[k + 2] <= drop:
            k += 3
    if drop:
        del seen[:drop]
        del marks[:k]
        for j in range(2, len(marks), 3):
            marks[j] -= drop


def merged(
    a: tuple[bytes | bytearray, list[int]],
    b: tuple[bytes | bytearray, list[int]],
    horizon: int,
    max_ids: int,
) -> tuple[bytearray, list[int]]:
    """The ids of two customers' `(seen, marks)` in one: their buckets in order of last
    arrival (the same whichever comes first), then pruned as `prune` does."""
    buckets: list[tuple[int, int, bytes]] = []
    for seen, marks in (a, b):
        start = 0
        for k in range(0, len(marks), 3):
            end = marks[k + 2]
            buckets.append((marks[k + 1], marks[k], bytes(seen[start:end])))
            start = end
    buckets.sort()
    out = bytearray()
    out_marks: list[int] = []
    for last, first, chunk in buckets:
        out += chunk
        out_marks += (first, last, len(out))
    prune(out, out_marks, horizon, max_ids)
    return out, out_marks


def from_pairs(pairs: dict[int, int]) -> tuple[bytearray, list[int]]:
    """``{hash: received}`` (state version 1) as `(seen, marks)`: one bucket, oldest first."""
    seen = bytearray()
    for h, _t in sorted(pairs.items(), key=lambda kv: (kv[1], kv[0])):
        seen += h.to_bytes(8, "little")
    if not pairs:
        return seen, []
    times = pairs.values()
    return seen, [min(times), max(times), len(seen)]
