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
