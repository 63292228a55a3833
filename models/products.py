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
from typing import Final

WEIGHTS: Final = {"view": 1.0, "cart": 3.0, "order": 5.0}


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
        seen = 0
        for other in reversed(history):
            if other == product:
                continue
            self._pair(product, other, w)
            self._pair(other, product, w)
            seen += 1
            if seen == self.window:
                break
        if len(self.trend) > self.max_products:
            self._prune()

    def _pair(self, a: str, b: str, w: float) -> None:
        row = self.co.get(a)
        if row is None:
            row = self.co[a] = {}
        row[b] = row.get(b, 0.0) + w
        if len(row) > 2 * self.neighbours:
            self.co[a] = dict(_largest(row, self.neighbours))

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


def trending_only(cat: Catalogue, exclude: Iterable[str] = (), n: int = 10) -> list[str]:
    """The baseline: what is trending overall, minus `exclude`."""
    banned = set(exclude)
    return [p for p in cat.trending(n + len(banned)) if p not in banned][:n]


def top_of(table: Mapping[str, float], n: int) -> list[str]:
    """The `n` keys of highest value (ties: the larger key), best first."""
    return [k for k, _ in _largest(table, n)]


def _largest(table: Mapping[str, float], n: int) -> list[tuple[str, float]]:
    return heapq.nlargest(n, table.items(), key=_value_then_key)


def _value_then_key(kv: tuple[str, float]) -> tuple[float, str]:
    return kv[1], kv[0]
