"""What rules and templates see of a customer (`models.features`)."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any

from models.events import PRODUCT_VIEWED
from models.features import DAY_MS, NEVER, features
from models.profile import Profile

T0 = 1_765_000_000_000


def reference(p: Profile, now_ms: int, channel: str, tz_offset_min: int) -> dict[str, Any]:
    """The features as their definition reads (datetime for the local time, a sum per
    figure): `features` is computed differently, for speed, and must agree value for value
    and type for type (CEL tells an int from a double)."""
    cart = p.cart
    local = datetime.fromtimestamp((now_ms + tz_offset_min * 60_000) / 1000, tz=UTC)
    return {
        "cart": {
            "items": sum(1 for q, _ in cart.values() if q > 0),
            "quantity": sum(q for q, _ in cart.values()),
            "value": round(sum(q * pr for q, pr in cart.values()), 2),
            "age_s": (now_ms - p.cart_updated) / 1000 if p.cart_updated is not None else NEVER,
            "products": sorted(cart),
        },
        "orders": p.orders,
        "revenue": round(p.revenue, 2),
        "days_since_order": (now_ms - p.last_order) / DAY_MS if p.last_order else NEVER,
        "days_since_seen": (now_ms - p.last_seen) / DAY_MS,
        "days_as_customer": (now_ms - p.first_seen) / DAY_MS,
        "sessions": p.sessions,
        "events": dict(p.counts),
        "total_events": sum(p.counts.values()),
        "views": p.counts.get(PRODUCT_VIEWED, 0),
        "recent_products": list(p.recent),
        "top_category": max(p.categories, key=lambda k: (p.categories[k], k), default=""),
        "channel": channel,
        "traits": dict(p.traits),
        "context": {},
        "hour": local.hour,
        "weekday": local.isoweekday(),
    }


def typed(v: Any) -> Any:
    """`v` with the type of every scalar in it, so that 0 == 0.0 == False do not pass."""
    if isinstance(v, dict):
        return {k: typed(x) for k, x in v.items()}
    if isinstance(v, list):
        return [typed(x) for x in v]
    return (type(v).__name__, v)


def random_profile(rng: random.Random) -> Profile:
    cats = rng.choice(["", "ab", "abc", "aab"])
    cart: dict[str, list[float]] = {}
    for n in range(rng.choice([0, 0, 1, 3])):
        qty: float = rng.choice([0, 1, 2, 1.5])
        cart[f"p{rng.randrange(9)}{n}"] = [qty, rng.choice([0, 9.99, 20.0, 0.1])]
    seen = T0 - rng.randrange(0, 90 * DAY_MS)
    return Profile(
        "u1", seen - rng.randrange(0, 400 * DAY_MS), seen, seen, DAY_MS, 1_800_000,
        {PRODUCT_VIEWED: rng.randrange(5), "Order Completed": rng.randrange(2)}, {},
        {c: float(rng.choice([1, 2, 2])) for c in cats}, {}, rng.randrange(4), None,
        ["p1", "p2"][: rng.randrange(3)], cart, rng.choice([None, seen - 5_000]),
        rng.randrange(3), rng.choice([0.0, 10.005, 99.999]), rng.choice([None, seen - 1]),
        {}, {"name": "Ada"}, {}, [], [],
    )  # fmt: skip


def test_features_agree_with_their_definition_value_for_value_and_type_for_type() -> None:
    rng = random.Random(7)
    for _ in range(3_000):
        p = random_profile(rng)
        # any time of day, around hour and day boundaries too, in zones east and west
        now = T0 + rng.choice([rng.randrange(0, 30 * DAY_MS), 3_599_999, 3_600_000, DAY_MS - 1])
        offset = rng.choice([0, 60, -300, 330, 345, -720, 840])
        got = features(p, now, "web", None, offset)
        assert typed(got) == typed(reference(p, now, "web", offset)), (p, now, offset)


def test_the_local_hour_and_weekday() -> None:
    p = random_profile(random.Random(1))
    monday_2330_utc = int(datetime(2026, 11, 23, 23, 30, tzinfo=UTC).timestamp() * 1000)
    f = features(p, monday_2330_utc, "web")
    assert (f["hour"], f["weekday"]) == (23, 1)
    f = features(p, monday_2330_utc, "web", tz_offset_min=60)  # Tuesday 00:30 there
    assert (f["hour"], f["weekday"]) == (0, 2)
    f = features(p, monday_2330_utc, "web", tz_offset_min=-600)  # Monday 13:30
    assert (f["hour"], f["weekday"]) == (13, 1)
