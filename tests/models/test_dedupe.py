"""Compact de-duplication: alignment, the window by arrival time, the per-customer cap, merges
and state version 1 snapshots."""

from __future__ import annotations

import msgpack
import pytest

from models import dedupe
from models.customer import (
    STATE_VERSION,
    ProfileParams,
    decode_state,
    encode_state,
    merge,
    message_hash,
    state_to_row,
    step,
)
from models.events import Event

MIN = 60_000
T0 = 1_700_000_000_000


def ev(mid: str, received: int, user: str = "u1") -> Event:
    return Event("track", mid, T0, received, "web", user_id=user, event="X")


def test_key_is_the_hash_in_little_endian() -> None:
    for mid in ("m1", "ajs-next-1", "é" * 40):
        assert dedupe.key_of(mid.encode()) == message_hash(mid).to_bytes(8, "little")


def test_a_match_straddling_two_entries_is_not_a_hit() -> None:
    a, b = bytes(range(8)), bytes(range(8, 16))
    seen = bytearray(a + b)
    straddling = a[4:] + b[:4]
    assert not dedupe.contains(seen, straddling)
    seen += straddling  # now it is also an entry of its own, after the straddling match
    assert dedupe.contains(seen, straddling)
    assert dedupe.contains(seen, a) and dedupe.contains(seen, b)


def test_ids_count_once_within_the_window_by_arrival_and_again_after_it() -> None:
    p = ProfileParams(dedupe_window_ms=60 * MIN, lateness_ms=0)
    state, _ = step(None, ev("m1", T0), p)
    for i in range(1, 120):  # two hours of other events, one a minute
        state, _ = step(state, ev(f"x{i}", T0 + i * MIN), p)
        if i <= 60:  # still within the window of m1's arrival: a duplicate
            assert not step(state, ev("m1", T0 + i * MIN), p)[1]
    # the window plus a bucket later, m1 is forgotten and counts again
    assert step(state, ev("m1", T0 + 120 * MIN), p)[1]
    # memory: the last window and at most one bucket more (8 bytes per id)
    assert len(state.seen) // 8 <= 60 + 60 // dedupe.BUCKETS + 1
    assert len(state.seen_marks) % 3 == 0 and state.seen_marks[-1] == len(state.seen)


def test_a_customer_keeps_at_most_max_ids_and_forgets_the_oldest_first() -> None:
    p = ProfileParams(dedupe_max_ids=100)
    state = None
    for i in range(1_000):
        state, changed = step(state, ev(f"m{i}", T0 + i), p)
        assert changed
    assert state is not None
    assert 75 * 8 <= len(state.seen) <= 100 * 8
    assert not step(state, ev("m999", T0 + 2_000), p)[1]  # the newest are remembered
    assert step(state, ev("m0", T0 + 2_000), p)[1]  # the oldest were forgotten
    assert state.seen_marks[-1] == len(state.seen)


def test_merge_knows_both_customers_ids_whichever_order() -> None:
    p = ProfileParams(dedupe_window_ms=60 * MIN)
    a = b = None
    for i in range(50):
        a, _ = step(a, ev(f"a{i}", T0 + i * MIN, "u1"), p)
        b, _ = step(b, ev(f"b{i}", T0 + i * MIN + 1, "anon"), p)
    assert a is not None and b is not None
    ab, ba = merge(a, b, "u1", p), merge(b, a, "u1", p)
    assert (ab.seen, ab.seen_marks) == (ba.seen, ba.seen_marks)
    # what is older than the window is dropped, the rest of both is known
    assert not step(ab, ev("a49", T0 + 50 * MIN), p)[1]
    assert not step(ab, ev("b30", T0 + 50 * MIN), p)[1]
    assert step(ab, ev("a0", T0 + 70 * MIN), p)[1]
    marks = ab.seen_marks
    assert [marks[k + 1] for k in range(0, len(marks), 3)] == sorted(
        marks[k + 1] for k in range(0, len(marks), 3)
    )


def test_snapshot_keeps_seen_as_one_binary_string() -> None:
    p = ProfileParams()
    state = None
    for i in range(200):
        state, _ = step(state, ev(f"ajs-{i:032x}", T0 + i), p)
    assert state is not None
    blob = encode_state(state)
    back = decode_state(blob)
    assert back == state and isinstance(back.seen, bytearray)
    assert not step(back, ev("ajs-" + f"{7:032x}", T0 + 500), p)[1]
    assert len(blob) < 200 * 8 + 300  # 8 bytes per id, not a map entry


def test_version_1_snapshots_still_read() -> None:
    p = ProfileParams()
    state, _ = step(None, ev("old-1", T0), p)
    state, _ = step(state, ev("old-2", T0 + MIN), p)
    row = state_to_row(state)
    assert row[0] == STATE_VERSION == 2
    at = row.index(state.seen)
    v1 = [1, *row[1:at], {message_hash("old-1"): T0, message_hash("old-2"): T0 + MIN},
          row[at + 2], 64, *row[at + 3:]]  # fmt: skip
    old = decode_state(msgpack.packb(v1, use_bin_type=True))
    assert old == state
    assert not step(old, ev("old-2", T0 + 2 * MIN), p)[1]


def test_unknown_state_version_is_refused() -> None:
    row = state_to_row(step(None, ev("m", T0), ProfileParams())[0])
    with pytest.raises(Exception, match="unknown customer state version 3"):
        decode_state(msgpack.packb([3, *row[1:]], use_bin_type=True))
