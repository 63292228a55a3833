"""Product suggestions: item-to-item co-occurrence ("viewed/bought together"), with trending
products in the customer's top categories, then overall, as the fallbacks (pure).

`Catalogue` is the state the dataflow keeps up to date from the event stream (it is
`observe`d with every product interaction, in event-time order per customer) and `suggest`
answers from it. Co-occurrence pairs a product with the customer's few previous distinct
products (a sliding window, so sessions need no boundaries), weighted by what was done (a
view 1, an add to cart 3, an order 5). Every table is bounded: a product keeps its strongest
`neighbours` partners, trending counts decay with `half_life_ms`, and the least-seen entries
are pruned once a table outgrows its cap.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import msgpack

from models.events import ORDER_COMPLETED, PRODUCT_ADDED, PRODUCT_VIEWED, Event
from models.profile import Profile

WEIGHTS: Final = {"view": 1.0, "cart": 3.0, "order": 5.0}
ACTIONS: Final = {PRODUCT_VIEWED: "view", PRODUCT_ADDED: "cart", ORDER_COMPLETED: "order"}
CATALOGUE_VERSION: Final = 1
# (previous distinct products, most recent last; product; action; event time; category)
Observation = tuple[list[str], str, str, int, str | None]


class ProductsError(ValueError):
    """A published product index that cannot be read."""


@dataclass(slots=True)
class Catalogue:
    window: int = 5  # previous distinct products a new one pairs with
    neighbours: int = 50  # partners kept per product
    half_life_ms: int = 24 * 3600 * 1000
    max_products: int = 200_000
    co: dict[str, dict[str, float]] = field(default_factory=dict)
    category_of: dict[str, str] = field(default_factory=dict)
    # trending, in anchor space (see `models.customer`): product -> decayed weight
    trend: dict[str, float] = field(default_factory=dict)
    trend_by_cat: dict[str, dict[str, float]] = field(default_factory=dict)
    anchor: int | None = None
    # trending lists are recomputed every `refresh_every` observations, not per suggestion
    # (a full scan of the products): what a suggestion sees is at most that stale
    refresh_every: int = 500
    top_n: int = 100
    _seen: int = 0
    _tops: dict[str | None, list[str]] = field(default_factory=dict)

    def observe(
        self,
        history: Sequence[str],
        product: str,
        action: str,
        ts: int,
        category: str | None = None,
    ) -> None:
        """A customer acted on `product` at `ts`; `history` is their previous distinct
        products, most recent last (e.g. the profile's recently viewed products)."""
        w = WEIGHTS.get(action, 1.0)
        self._seen += 1
        if self._seen % self.refresh_every == 0:
            self._tops.clear()
        if category:
            self.category_of[product] = category
        if self.anchor is None:
            self.anchor = ts
        boost = w * 2.0 ** ((ts - self.anchor) / self.half_life_ms)
        if boost > 1e12:  # keep anchor-space numbers finite: move the anchor forward
            self._rebase(ts)
            boost = w
        self.trend[product] = self.trend.get(product, 0.0) + boost
        cat = self.category_of.get(product)
        if cat:
            by = self.trend_by_cat.setdefault(cat, {})
            by[product] = by.get(product, 0.0) + boost
        if history:
            co = self.co
            mine = co.get(product)
            if mine is None:
                mine = co[product] = {}
            seen = 0
            for other in reversed(history):  # inlined pairing: this runs for every event
                if other == product:
                    continue
                mine[other] = mine.get(other, 0.0) + w
                row = co.get(other)
                if row is None:
                    co[other] = {product: w}
                else:
                    row[product] = row.get(product, 0.0) + w
                    if len(row) > 2 * self.neighbours:
                        co[other] = dict(_largest(row, self.neighbours))
                seen += 1
                if seen == self.window:
                    break
            if len(mine) > 2 * self.neighbours:
                co[product] = dict(_largest(mine, self.neighbours))
        if len(self.trend) > self.max_products:
            self._prune()

    def _rebase(self, ts: int) -> None:
        assert self.anchor is not None
        factor = 2.0 ** (-(ts - self.anchor) / self.half_life_ms)
        self.anchor = ts
        for table in (self.trend, *self.trend_by_cat.values()):
            for k in table:
                table[k] *= factor

    def _prune(self) -> None:
        keep = dict(_largest(self.trend, self.max_products // 2))
        gone = self.trend.keys() - keep.keys()
        self.trend = keep
        for p in gone:
            self.co.pop(p, None)
            cat = self.category_of.pop(p, None)
            if cat and cat in self.trend_by_cat:
                self.trend_by_cat[cat].pop(p, None)

    def observe_all(self, batch: Iterable[Observation]) -> None:
        for history, product, action, ts, category in batch:
            self.observe(history, product, action, ts, category)

    def compact(
        self, products: int = 20_000, neighbours: int = 20, categories: int = 1_000
    ) -> Catalogue:
        """What suggestions need, bounded: the `products` most trending, each with its
        `neighbours` strongest partners, and the `top_n` trending of the `categories`
        busiest categories. This is what the dataflow publishes and the API answers from
        (`encode_catalogue`); it is also a valid `Catalogue` to carry on learning."""
        keep = _top(self.trend, products)
        by_cat = {
            cat: _top(table, self.top_n)
            for cat, table in _largest_tables(self.trend_by_cat, categories)
        }
        rows = self.co
        co = {p: _top(rows[p], neighbours) for p in keep if p in rows}
        return Catalogue(
            window=self.window,
            neighbours=self.neighbours,
            half_life_ms=self.half_life_ms,
            max_products=self.max_products,
            co=co,
            category_of={p: c for p in keep if (c := self.category_of.get(p)) is not None},
            trend=keep,
            trend_by_cat=by_cat,
            anchor=self.anchor,
            refresh_every=self.refresh_every,
            top_n=self.top_n,
        )

    def trending(self, n: int, category: str | None = None) -> list[str]:
        """The `n` (≤ `top_n`) most trending products, overall or in `category`."""
        top = self._tops.get(category)
        if top is None:
            table = self.trend if category is None else self.trend_by_cat.get(category, {})
            top = self._tops[category] = top_of(table, self.top_n)
        return top[:n]


def suggest(
    cat: Catalogue,
    recent: Sequence[str],
    top_categories: Iterable[str] = (),
    exclude: Iterable[str] = (),
    n: int = 10,
) -> list[str]:
    """Up to `n` products for a customer: partners of their recent products (the most recent
    weigh most), then trending in their top categories, then trending overall; never a product
    in `exclude` (what they just bought) nor the one they are looking at (`recent[-1]`)."""
    banned = set(exclude)
    if recent:
        banned.add(recent[-1])
    scores: dict[str, float] = {}
    for age, product in enumerate(reversed(recent[-cat.window :])):
        weight = 1.0 / (1 + age)
        for other, w in cat.co.get(product, {}).items():
            if other not in banned:
                scores[other] = scores.get(other, 0.0) + weight * w
    out = top_of(scores, n)
    if len(out) < n:
        chosen = set(out) | banned
        for source in (*(cat.trending(n + len(chosen), c) for c in top_categories),
                       cat.trending(n + len(chosen))):  # fmt: skip
            for p in source:
                if p not in chosen:
                    out.append(p)
                    chosen.add(p)
                    if len(out) == n:
                        return out
    return out


def observations(recent: Sequence[list[Any]], ev: Event, window: int = 5) -> list[Observation]:
    """What a customer's product event teaches `Catalogue.observe`: `recent` is their
    ``[ts, product]`` list (`models.customer.CustomerState.recent`, ascending) *after* the
    event was applied (the product itself is skipped when pairing)."""
    action = ACTIONS.get(ev.event or "")
    if action is None:
        return []
    history = [pid for _, pid in recent[-(window + 1) :]]
    props = ev.properties
    if action == "view":  # most of them: one product, `models.customer` made it a str
        pid = props.get("product_id")
        if pid is not None and type(pid) is str:
            category = props.get("category")
            return [(history, pid, action, ev.timestamp, str(category) if category else None)]
    items = props.get("products") if action == "order" else (props,)
    out: list[Observation] = []
    for item in items if isinstance(items, (list, tuple)) else ():
        if not isinstance(item, dict):
            continue
        pid = item.get("product_id", item.get("sku"))
        if pid is None:
            continue
        category = item.get("category")
        out.append((history, str(pid), action, ev.timestamp,
                    str(category) if category else None))  # fmt: skip
    return out


def encode_catalogue(cat: Catalogue) -> bytes:
    """A catalogue as versioned msgpack (published for the API, and the dataflow's snapshot;
    never pickle)."""
    return msgpack.packb(
        [CATALOGUE_VERSION, cat.window, cat.neighbours, cat.half_life_ms, cat.max_products,
         cat.co, cat.category_of, cat.trend, cat.trend_by_cat, cat.anchor, cat.top_n],
        use_bin_type=True,
    )  # fmt: skip


def decode_catalogue(data: bytes) -> Catalogue:
    try:
        row = msgpack.unpackb(data, raw=False, strict_map_key=False)
    except (ValueError, msgpack.ExtraData) as exc:
        raise ProductsError(f"product index is not msgpack: {exc}") from exc
    if not isinstance(row, list) or not row or row[0] != CATALOGUE_VERSION:
        raise ProductsError(f"unknown product index version {row[0] if row else None!r}")
    if len(row) != 11:
        raise ProductsError(f"product index has {len(row) - 1} fields, expected 10")
    _, window, neighbours, half_life_ms, max_products, co, cat_of, trend, by_cat, anchor, top = row
    return Catalogue(window=window, neighbours=neighbours, half_life_ms=half_life_ms,
                     max_products=max_products, co=co, category_of=cat_of, trend=trend,
                     trend_by_cat=by_cat, anchor=anchor, top_n=top)  # fmt: skip


def for_profile(cat: Catalogue, profile: Profile, n: int = 10) -> list[str]:
    """`suggest` for a customer's profile: their recently viewed products, their two top
    categories; never what they just bought nor what is already in their cart."""
    recent = profile.recent[: cat.window][::-1]  # the latest few, oldest first
    top = top_of(profile.categories, 2) if profile.categories else ()
    return suggest(cat, recent, top, (*profile.bought, *profile.cart), n)


def trending_only(cat: Catalogue, exclude: Iterable[str] = (), n: int = 10) -> list[str]:
    """The baseline: what is trending overall, minus `exclude`."""
    banned = set(exclude)
    return [p for p in cat.trending(n + len(banned)) if p not in banned][:n]


def top_of(table: Mapping[str, float], n: int) -> list[str]:
    """The `n` keys of highest value (ties: the larger key), best first."""
    return [k for k, _ in _largest(table, n)]


def _largest(table: Mapping[str, float], n: int) -> list[tuple[str, float]]:
    if n * 8 >= len(table):  # a large share of it: one C sort beats n heap operations
        return sorted(table.items(), key=_value_then_key, reverse=True)[:n]
    return heapq.nlargest(n, table.items(), key=_value_then_key)


def _top(table: Mapping[str, float], n: int) -> dict[str, float]:
    """The `n` largest entries of `table` (all of it, copied, when it is that small)."""
    return dict(table) if len(table) <= n else dict(_largest(table, n))


def _largest_tables(
    tables: Mapping[str, dict[str, float]], n: int
) -> list[tuple[str, dict[str, float]]]:
    return heapq.nlargest(n, tables.items(), key=lambda kv: (sum(kv[1].values()), kv[0]))


def _value_then_key(kv: tuple[str, float]) -> tuple[float, str]:
    return kv[1], kv[0]
