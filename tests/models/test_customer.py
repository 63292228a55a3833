"""The customer transition: what each event does, de-duplication, and order independence."""

from __future__ import annotations

import random
from typing import Any

import pytest

from models.customer import ProfileParams, decode_state, encode_state, merge, step
from models.events import Event
from models.profile import decode_profile, encode_profile, render
from tests.models.folding import P, fold, view

MIN = 60_000
T0 = 1_700_000_000_000


def ev(i: int, name: str, t: int, props: dict[str, Any] | None = None, **kw: Any) -> Event:
    return Event(
        type=kw.pop("type", "track"),
        message_id=kw.pop("mid", f"m{i}"),
        timestamp=t,
        received_at=t,
        channel=kw.pop("channel", "web"),
        user_id="u1",
        event=name,
        properties=props or {},
        **kw,
    )


def shop_story() -> list[Event]:
    """Two sessions on two channels: browse, cart, remove, order, then browse and cart again."""
    t = T0
    return [
        ev(1, "Product Viewed", t, {"product_id": "p1", "category": "shoes", "brand": "acme"}),
        ev(2, "Product Viewed", t + 1 * MIN, {"product_id": "p2", "category": "shoes"}),
        ev(3, "Product Added", t + 2 * MIN, {"product_id": "p1", "price": 50, "quantity": 2}),
        ev(4, "Product Added", t + 3 * MIN, {"product_id": "p2", "price": 20}),
        ev(5, "Product Removed", t + 4 * MIN, {"product_id": "p1", "quantity": 1}),
        ev(6, "Cart Viewed", t + 5 * MIN),
        ev(7, "Checkout Started", t + 6 * MIN),
        ev(8, "Order Completed", t + 7 * MIN, {"order_id": "o1", "revenue": 70,
           "products": [{"product_id": "p1", "category": "shoes"}]}),
        ev(9, "page", t + 90 * MIN, type="page", channel="app"),
        ev(10, "Product Viewed", t + 91 * MIN, {"product_id": "p3", "category": "bags"},
           channel="app"),
        ev(11, "Product Added", t + 92 * MIN, {"product_id": "p3", "price": 15.5}, channel="app"),
    ]  # fmt: skip


def test_profile_of_a_shopping_story() -> None:
    v = view(shop_story())
    assert v["events"]["total"] == 11
    assert v["events"]["by_type"]["Product Viewed"] == 3
    assert v["events"]["by_type"]["page"] == 1
    assert v["sessions"]["count"] == 2
    cur = v["sessions"]["current"]
    assert (cur["events"], cur["channel"], cur["duration_s"]) == (3, "app", 120.0)
    assert v["recent_products"] == ["p3", "p2", "p1"]
    assert v["cart"]["items"] == [{"product_id": "p3", "quantity": 1.0, "price": 15.5}]
    assert v["cart"]["value"] == 15.5
    assert v["orders"] == {
        "count": 1,
        "revenue": 70.0,
        "average_value": 70.0,
        "last_order_at": "2023-11-14T22:20:20Z",
        "recent_products": ["p1"],  # what was just bought (never suggested)
    }
    assert set(v["channels"]) == {"web", "app"}
    assert list(v["affinity"]["categories"]) == ["shoes", "bags"]
    assert v["first_seen"] == "2023-11-14T22:13:20Z"


def test_order_empties_cart_and_lines_of_one_order_count_once() -> None:
    t = T0
    v = view([
        ev(1, "Product Added", t, {"product_id": "a", "price": 10}),
        ev(2, "Order Completed", t + 1000, {"order_id": "o", "revenue": 10}),
        ev(3, "Order Completed", t + 2000, {"order_id": "o", "revenue": 5}),
        ev(4, "Order Completed", t + 3000, {"products": [{"price": 2, "quantity": 3}]}),
    ])  # fmt: skip
    assert v["cart"]["items"] == []
    assert v["orders"]["count"] == 2
    assert v["orders"]["revenue"] == 21.0


def test_duplicate_message_ids_count_once() -> None:
    e = ev(1, "Product Added", T0, {"product_id": "a", "price": 10})
    state, changed = step(None, e, P)
    state, changed2 = step(state, e, P)
    assert (changed, changed2) == (True, False)
    assert state.counts == {"Product Added": 1}
    assert state.cart() == {"a": [1.0, 10.0]}


def test_dedupe_window_expires() -> None:
    params = ProfileParams(dedupe_window_ms=MIN, lateness_ms=0)
    events = [ev(i, "X", T0 + i * 10 * MIN) for i in range(100)]
    state = fold(events, params)
    # only the last window's ids (and at most one bucket more) are kept, so state stays small
    assert len(state.seen) // 8 <= 2
    _again, changed = step(state, events[-1], params)
    assert not changed


def test_decay_halves_per_half_life() -> None:
    params = ProfileParams(half_life_ms=60 * MIN)
    state = fold([ev(1, "X", T0), ev(2, "X", T0 + 60 * MIN)], params)
    out = render(decode_profile(encode_profile(state, params)), T0 + 60 * MIN)
    assert out["events"]["decayed"]["X"] == pytest.approx(1.5)
    later = render(decode_profile(encode_profile(state, params)), T0 + 120 * MIN)
    assert later["events"]["decayed"]["X"] == pytest.approx(0.75)


def test_decay_survives_far_future_rebase() -> None:
    params = ProfileParams(half_life_ms=MIN)
    state = fold([ev(1, "X", T0), ev(2, "X", T0 + 10_000 * MIN)], params)
    out = render(decode_profile(encode_profile(state, params)), T0 + 10_000 * MIN)
    assert out["events"]["decayed"]["X"] == pytest.approx(1.0)


def test_state_codec_round_trip() -> None:
    state = fold(shop_story())
    assert decode_state(encode_state(state)) == state


@pytest.mark.parametrize("seed", range(25))
def test_out_of_order_within_lateness_gives_the_same_state(seed: int) -> None:
    rng = random.Random(seed)
    events = shop_story()
    shuffled = events[:]
    # displace events by up to the lateness bound: the sort key is time + jitter
    shuffled.sort(key=lambda e: e.timestamp + rng.uniform(0, P.lateness_ms))
    a = view(events, now=T0 + 100 * MIN)
    b = view(shuffled, now=T0 + 100 * MIN)
    # decayed sums are equal up to float rounding; everything else exactly
    for path in (("events", "decayed"), ("affinity", "categories"), ("affinity", "brands")):
        da, db = a[path[0]].pop(path[1]), b[path[0]].pop(path[1])
        assert da.keys() == db.keys()
        assert all(da[k] == pytest.approx(db[k], rel=1e-12) for k in da)
    assert a == b


def test_late_event_bridging_two_sessions_merges_them() -> None:
    t = T0
    early, late = ev(1, "X", t), ev(3, "X", t + 50 * MIN)
    bridge = ev(2, "X", t + 25 * MIN)  # 25 min late
    params = ProfileParams(lateness_ms=30 * MIN)
    assert len(fold([early, late], params).sessions) == 2
    merged = fold([early, late, bridge], params)
    assert merged.sessions_closed + len(merged.sessions) == 1
    assert merged.sessions[0][2] == 3
    # beyond the lateness bound the closed session is not reopened (nor counted twice)
    beyond = fold([early, late, bridge], ProfileParams(lateness_ms=10 * MIN))
    assert beyond.sessions_closed + len(beyond.sessions) == 2


def test_sessions_close_and_stay_counted() -> None:
    events = [ev(i, "X", T0 + i * 40 * MIN) for i in range(50)]
    state = fold(events)
    assert state.sessions_closed + len(state.sessions) == 50
    assert len(state.sessions) <= 2  # closed sessions are folded away


def test_cart_ops_in_the_same_millisecond_are_ordered_by_kind() -> None:
    t = T0
    add = ev(1, "Product Added", t, {"product_id": "a", "price": 1})
    order = ev(2, "Order Completed", t, {"order_id": "o", "revenue": 1})
    assert fold([add, order]).cart() == fold([order, add]).cart() == {}


def test_identify_traits_merge_latest_wins() -> None:
    t = T0
    a = ev(1, None, t, type="identify", traits={"name": "Ann", "plan": "free"})  # type: ignore[arg-type]
    b = ev(2, None, t + 1, type="identify", traits={"plan": "pro"})  # type: ignore[arg-type]
    for order in ([a, b], [b, a]):
        assert fold(order).traits == {"name": "Ann", "plan": "pro"}


def test_retried_old_events_count_once_however_old() -> None:
    # an offline queue flushed two days late, then retried: de-duplication is by arrival time
    day = 24 * 60 * MIN
    fresh = [ev(100 + i, "X", T0 + 3 * day + i) for i in range(10)]
    old = [ev(i, "X", T0 + i * MIN) for i in range(100)]
    for e in old:
        e.received_at = T0 + 3 * day
    state = fold(fresh + old + old)
    assert state.counts["X"] == 110


def test_traits_are_order_independent_per_key() -> None:
    t = T0
    a = ev(1, None, t, type="identify", traits={"plan": "free", "city": "Rome"})  # type: ignore[arg-type]
    b = ev(2, None, t + 10, type="identify", traits={"plan": "gold"})  # type: ignore[arg-type]
    c = ev(3, None, t + 5, type="identify", traits={"city": "Oslo"})  # type: ignore[arg-type]
    assert (
        fold([a, b, c]).traits
        == fold([a, c, b]).traits
        == fold([c, b, a]).traits
        == {
            "plan": "gold",
            "city": "Oslo",
        }
    )


def test_client_chosen_event_names_are_bounded() -> None:
    state = fold([ev(i, f"Custom {i}", T0 + i) for i in range(200)])
    assert len(state.counts) == P.max_event_types + 1
    assert state.counts["(other)"] == 200 - P.max_event_types
    assert sum(state.counts.values()) == 200


def test_affinity_eviction_is_deterministic_on_ties() -> None:
    params = ProfileParams(max_affinity_keys=3)
    views = [ev(i, "Product Viewed", T0, {"category": f"c{i}"}) for i in range(6)]
    a = fold(views, params).categories
    b = fold(list(reversed(views)), params).categories
    # equal scores: the smallest key goes first, whatever the order of arrival
    assert set(a) == set(b) == {"c3", "c4", "c5"}


# --- merging two customers (identity stitching) --------------------------------------------


def as_user(events: list[Event], uid: str) -> list[Event]:
    for e in events:
        e.user_id = uid
    return events


def browsing(seed: int, n: int, prefix: str) -> list[Event]:
    rng = random.Random(seed)
    names = ["Product Viewed"] * 6 + ["page", "Cart Viewed", "Order Completed"]
    out = []
    for i in range(n):
        name = rng.choice(names)
        props: dict[str, Any] = {
            "product_id": f"p{rng.randrange(8)}",
            "category": rng.choice(["shoes", "bags", "hats"]),
            "brand": rng.choice(["acme", "zeta"]),
        }
        if name == "Order Completed":
            props = {"order_id": f"o{rng.randrange(3)}", "revenue": 10.0}
        typ = "page" if name == "page" else "track"
        out.append(
            ev(i, name, T0 + rng.randrange(20 * MIN), props, type=typ, mid=f"{prefix}{i}",
               channel=rng.choice(["web", "app", "email"]))
        )  # fmt: skip
    out.sort(key=lambda e: e.timestamp)
    return out


@pytest.mark.parametrize("seed", range(20))
def test_merge_equals_one_customer_having_done_both(seed: int) -> None:
    phone, laptop = browsing(seed, 15, "a"), browsing(seed + 100, 15, "b")
    merged = merge(fold(phone), fold(laptop), "u1", P)
    together = fold(sorted(phone + laptop, key=lambda e: e.timestamp))
    now = T0 + 30 * MIN
    a = render(decode_profile(encode_profile(merged, P)), now)
    b = render(decode_profile(encode_profile(together, P)), now)
    for path in (("events", "decayed"), ("affinity", "categories"), ("affinity", "brands")):
        da, db = a[path[0]].pop(path[1]), b[path[0]].pop(path[1])
        assert da == pytest.approx(db, rel=1e-9)
    # the same order_id under both ids is one order (orders count once), its revenue adds
    assert a == b


def test_merge_is_symmetric_and_combines_carts() -> None:
    t = T0
    phone = fold([ev(1, "Product Added", t, {"product_id": "p1", "price": 10}),
                  ev(2, "Product Added", t + 1, {"product_id": "p2", "price": 5})])  # fmt: skip
    laptop = fold(as_user([ev(3, "Product Added", t + 2, {"product_id": "p1", "price": 12,
                                                           "quantity": 2})], "u2"))  # fmt: skip
    m1, m2 = merge(phone, laptop, "u2", P), merge(laptop, phone, "u2", P)
    assert m1 == m2
    assert m1.customer_id == "u2"
    assert m1.cart() == {"p1": [3.0, 12.0], "p2": [1.0, 5.0]}  # quantities add, later price
    assert m1.counts == {"Product Added": 3}
    assert m1.first_seen == t and m1.last_seen == t + 2
    # an event either id had already seen is still a duplicate after the merge
    assert step(m1, ev(1, "Product Added", t, {"product_id": "p1", "price": 10}), P)[1] is False
    assert decode_state(encode_state(m1)) == m1
