"""Golden tests: the Redis key layout is a contract with running deployments."""

from models.keys import Keys, partition_for, progress_field


def test_keys_are_pinned() -> None:
    k = Keys("nudge")
    assert k.events(0) == "nudge:v1:events:{p0}"
    assert k.all_events(2) == ["nudge:v1:events:{p0}", "nudge:v1:events:{p1}"]
    assert k.deadletter() == "nudge:v1:deadletter"
    assert k.profile("541312140") == "nudge:v1:c:{541312140}:profile"
    assert k.progress() == "nudge:v1:progress"
    assert progress_field(k.events(1), "read") == "nudge:v1:events:{p1}:read"


def test_partition_is_stable_crc32() -> None:
    # pinned values: changing the hash would send customers to other partitions
    assert [partition_for(c, 4) for c in ("a", "b", "541312140", "user-42")] == [3, 1, 1, 3]
    assert all(0 <= partition_for(str(i), 7) < 7 for i in range(1000))
