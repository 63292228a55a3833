"""Product suggestions: co-occurrence first, trending fallbacks, exclusions, bounds."""

from __future__ import annotations

from models.products import Catalogue, suggest, trending_only

T = 1_700_000_000_000


def fed(*sessions: list[str], action: str = "view") -> Catalogue:
    cat = Catalogue(refresh_every=1)
    t = T
    for products in sessions:
        history: list[str] = []
        for p in products:
            t += 1000
            cat.observe(history, p, action, t, category=p[0])
            history.append(p)
    return cat


def test_viewed_together_comes_first() -> None:
    cat = fed(["a1", "b1"], ["a1", "b1"], ["a1", "c1"], ["x1", "y1"], ["x1", "y1"], ["x1", "y1"])
    assert suggest(cat, ["a1"], n=2) == ["b1", "c1"]
    # the customer's most recent product weighs most
    assert suggest(cat, ["a1", "x1"], n=1) == ["y1"]


def test_never_what_was_just_bought_nor_the_current_product() -> None:
    cat = fed(["a1", "b1"], ["a1", "c1"], ["a1", "b1"])
    out = suggest(cat, ["b1", "a1"], exclude={"b1"}, n=5)
    assert "b1" not in out and "a1" not in out and out[0] == "c1"


def test_fallbacks_trending_in_top_categories_then_overall() -> None:
    cat = fed(["k1"], ["k2"], ["k2"], ["z1"], ["z1"], ["z1"])  # no pairs at all
    assert suggest(cat, ["q1"], top_categories=["k"], n=3) == ["k2", "k1", "z1"]
    assert trending_only(cat, n=2) == ["z1", "k2"]
    assert suggest(cat, [], n=1) == ["z1"]  # a brand-new visitor: what is trending


def test_tables_stay_bounded() -> None:
    cat = Catalogue(neighbours=3, max_products=50, refresh_every=1)
    history: list[str] = []
    for i in range(200):
        cat.observe(history, f"p{i}", "view", T + i)
        history = [*history, f"p{i}"][-5:]
    assert all(len(row) <= 6 for row in cat.co.values())  # 2 x neighbours before a trim
    assert len(cat.trend) <= 50


def test_orders_weigh_more_than_views() -> None:
    cat = Catalogue(refresh_every=1)
    cat.observe(["a"], "b", "view", T)
    cat.observe(["a"], "c", "order", T)
    assert suggest(cat, ["a"], n=2) == ["c", "b"]


def test_the_compact_index_round_trips_and_answers_alike() -> None:
    import pytest

    from models.products import ProductsError, decode_catalogue, encode_catalogue

    cat = fed(*[[f"a{i}", f"b{i % 7}", f"c{i % 3}"] for i in range(60)])
    small = cat.compact(products=10, neighbours=3)
    assert len(small.trend) == 10 and all(len(row) <= 3 for row in small.co.values())
    back = decode_catalogue(encode_catalogue(small))
    assert back.co == small.co and back.trend == small.trend
    assert suggest(back, ["c1"], n=5) == suggest(small, ["c1"], n=5)
    # the strongest partners survive compaction
    assert suggest(small, ["c1"], n=3) == suggest(cat, ["c1"], n=3)
    with pytest.raises(ProductsError, match="version"):
        decode_catalogue(b"\x92\x09\x00")
    with pytest.raises(ProductsError, match="not msgpack"):
        decode_catalogue(b"\xc1")


def test_observations_of_a_customers_events() -> None:
    from models.events import Event
    from models.products import observations

    recent = [[1, "p1"], [2, "p2"], [3, "p3"]]
    view = Event("track", "m1", 3, 3, "web", user_id="u", event="Product Viewed",
                 properties={"product_id": "p3", "category": "shoes"})  # fmt: skip
    assert observations(recent, view, window=1) == [(["p2", "p3"], "p3", "view", 3, "shoes")]
    lines = [{"product_id": 7}, {"sku": "s8"}, "junk", {}]
    order = Event("track", "m2", 4, 4, "web", user_id="u", event="Order Completed",
                  properties={"products": lines})  # fmt: skip
    assert [(o[1], o[2]) for o in observations(recent, order)] == [("7", "order"), ("s8", "order")]
    page = Event("page", "m3", 5, 5, "web", user_id="u")
    assert observations(recent, page) == []


def test_publishing_in_steps_gives_the_compact_index() -> None:
    from models.products import decoding, encode_catalogue, publishing

    cat = fed(*[[f"a{i % 301}", f"b{i % 7}", f"c{i % 3}", f"d{i % 53}"] for i in range(3_000)])
    assert len(cat.trend) > 300
    want = encode_catalogue(cat.compact(products=200, neighbours=4, categories=5))
    steps = list(publishing(cat, products=200, neighbours=4, categories=5, step=16))
    assert steps[-1] == want and all(s is None for s in steps[:-1])
    assert len(steps) > 200 // 16  # one step per 16 rows, at least
    read = list(decoding(want, step=16))
    assert len(read) > 200 // 16 and all(r is None for r in read[:-1])
    back = read[-1]
    assert back is not None and encode_catalogue(back) == want


def test_a_publication_reads_rows_as_they_are_when_packed() -> None:
    from models.products import decode_catalogue, publishing

    cat = fed(*[[f"a{i % 50}", f"b{i % 5}"] for i in range(500)])
    steps = publishing(cat, products=100, neighbours=100, step=5)
    assert next(steps) is None  # ranked
    cat.observe(["b1"], "new", "view", T)  # learning goes on between steps
    blob = next(s for s in steps if s is not None)
    got = decode_catalogue(blob)
    assert set(got.trend) <= set(cat.trend) and "new" not in got.trend  # ranked before it
    assert "new" in got.co["b1"]  # but b1's row was packed after it


def test_the_ranking_of_large_tables_is_the_exact_one() -> None:
    import random

    from models.products import _largest, _value_then_key

    rng = random.Random(3)
    table = {f"p{i}": float(rng.randint(0, 500)) for i in range(10_000)}  # many ties
    for n in (1, 10, 2_000, 9_999, 10_000):
        want = sorted(table.items(), key=_value_then_key, reverse=True)[:n]
        assert _largest(table, n) == want
