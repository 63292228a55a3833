"""Contact policy, pure parts: holdout stability and share, quiet hours across time zones."""

from __future__ import annotations

from datetime import UTC, datetime

from models.policy import in_holdout, quiet_until, zone


def ms(*args: int, tz: str = "UTC") -> int:
    return int(datetime(*args, tzinfo=zone(tz)).timestamp() * 1000)  # type: ignore[misc]


def test_holdout_is_stable_and_has_the_configured_share() -> None:
    ids = [f"customer-{i}" for i in range(20_000)]
    first = [in_holdout(c, 0.05, "salt") for c in ids]
    assert first == [in_holdout(c, 0.05, "salt") for c in ids]  # the same every time
    assert 0.045 < sum(first) / len(ids) < 0.055
    # a larger share keeps everyone who was held out (buckets, not coin flips)
    assert all(in_holdout(c, 0.10, "salt") for c, held in zip(ids, first, strict=True) if held)
    # another salt draws another group
    other = [in_holdout(c, 0.05, "other") for c in ids]
    assert sum(a and b for a, b in zip(first, other, strict=True)) < 0.01 * len(ids)


def test_quiet_hours_follow_the_customer_time_zone() -> None:
    start, end = 21 * 60, 8 * 60
    t = ms(2026, 11, 24, 2, 0)  # 02:00 UTC
    # Paris: 03:00, quiet until 08:00 Paris = 07:00 UTC
    assert quiet_until(t, zone("Europe/Paris"), start, end) == ms(2026, 11, 24, 7, 0)
    # New York: 21:00 the day before, quiet until 08:00 New York = 13:00 UTC
    assert quiet_until(t, zone("America/New_York"), start, end) == ms(2026, 11, 24, 13, 0)
    # Tokyo: 11:00, not quiet
    assert quiet_until(t, zone("Asia/Tokyo"), start, end) is None
    # a window that does not span midnight
    assert quiet_until(ms(2026, 11, 24, 13, 30), zone("UTC"), 13 * 60, 14 * 60) == ms(
        2026, 11, 24, 14, 0
    )
    assert quiet_until(t, zone("UTC"), 0, 0) is None  # no quiet hours


def test_quiet_hours_across_a_dst_change() -> None:
    # the night Paris moves from CEST to CET (2026-10-25): 22:30 local is 21:30 UTC
    t = int(datetime(2026, 10, 24, 20, 30, tzinfo=UTC).timestamp() * 1000)
    until = quiet_until(t, zone("Europe/Paris"), 21 * 60, 8 * 60)
    assert until == int(datetime(2026, 10, 25, 7, 0, tzinfo=UTC).timestamp() * 1000)


def test_unknown_zones_fall_back() -> None:
    assert zone("Mars/Olympus", "Europe/Paris").key == "Europe/Paris"
    assert zone(None).key == "UTC"
    assert zone("../../etc/passwd").key == "UTC"
